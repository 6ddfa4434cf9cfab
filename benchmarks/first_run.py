"""A new user's first run, timed: clone the repository, run README's main command, time every stage.

Clones the committed HEAD into a fresh folder (no .venv, no data, no models, no MLflow store),
runs `./scripts/repro.sh` there as README says, and stamps every output line, so the set-up and
each DVC stage ("Running stage 'X'") get their wall time. Writes benchmarks/results/first_run.json
(every run is kept, the newest last; the newest run's log beside it, .log), with the CPU time
other processes took meanwhile (a run timed beside other work is slower, and says so). The
clone's `dvc.lock` and metrics are left in the clone for whoever wants to compare them with the
committed ones (`--keep` keeps the folder).

    .venv/bin/python benchmarks/first_run.py                 # clone of HEAD into a temp folder
    .venv/bin/python benchmarks/first_run.py --keep /tmp/fc  # keep the clone there
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "benchmarks/results/first_run.json"
STAGE = re.compile(r"Running stage '([\w-]+)'")


def busy_cpu_s() -> float | None:
    """CPU seconds the whole machine has spent busy since boot (Linux /proc/stat), else None."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle and iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def stage_times(stamped: list[tuple[float, str]], end: float) -> dict[str, float]:
    """Seconds from each "Running stage 'X'" line to the next one (the last: to `end`); the time
    before the first stage is the set-up (`setup`)."""
    marks = [(t, m[1]) for t, line in stamped if (m := STAGE.search(line))]
    out = {"setup": (marks[0][0] if marks else end) - (stamped[0][0] if stamped else end)}
    for (t, name), nxt in zip(marks, [m[0] for m in marks[1:]] + [end]):
        out[name] = nxt - t
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keep", type=Path, help="clone into this (new) folder and keep it")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True).stdout.strip()
    folder = args.keep or Path(tempfile.mkdtemp(prefix="rcd-first-run-")) / "rcdistill"
    subprocess.run(["git", "clone", "-q", str(REPO), str(folder)], check=True)
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    start, busy_start, own_start = time.time(), busy_cpu_s(), children_cpu_s()
    stamped: list[tuple[float, str]] = [(start, "start")]
    proc = subprocess.Popen(["./scripts/repro.sh"], cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env=env)
    for line in proc.stdout:
        stamped.append((time.time(), line.rstrip("\n").split("\r")[-1]))  # a progress bar: its last state
        if STAGE.search(line):
            print(f"{stamped[-1][0] - start:7.0f} s  {line.strip()}", flush=True)
    rc = proc.wait()
    end, busy_end = time.time(), busy_cpu_s()
    own = children_cpu_s() - own_start             # the clone's set-up and stages (git clone was before)
    cpu_s = {"own": round(own, 1)}
    if busy_start is not None and busy_end is not None:
        cpu_s["other"] = round(max(busy_end - busy_start - own, 0.0), 1)  # everything else on the machine
    result = {"commit": head, "rc": rc, "total_s": round(end - start, 1), "cpu_s": cpu_s,
              "stages_s": {k: round(v, 1) for k, v in stage_times(stamped, end).items()},
              "cores": os.cpu_count(), "cpu": platform.processor() or platform.machine(),
              "date": time.strftime("%Y-%m-%d", time.gmtime(start))}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".log").write_text("\n".join(f"{t - start:8.1f} {line}" for t, line in stamped) + "\n")
    earlier = json.loads(args.out.read_text()) if args.out.exists() else {}
    runs = earlier.get("runs", [earlier] if earlier else []) + [result]   # every run kept; the last is the newest
    args.out.write_text(json.dumps({"runs": runs}, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    if not args.keep:
        shutil.rmtree(folder.parent, ignore_errors=True)
    sys.exit(rc)


if __name__ == "__main__":
    main()
