"""Run the pipeline's stages in dvc.yaml order and time each: for a machine without DVC (a GPU
image with only the wheels of benchmarks/gpu_wheels.txt). Stage commands are dvc.yaml's own,
with `rcd` run as `python -m rcdistill.cli`; DVC's caching and skipping are not reproduced.

    python benchmarks/run_stages.py --workdir DIR --params PROFILE [--out stages.json]
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", required=True, help="a scratch project folder (made if missing)")
    ap.add_argument("--params", required=True, help="a profile, written with `rcd params use`")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=YAML", help="overrides on top of the profile")
    ap.add_argument("--out", default="stages.json")
    args = ap.parse_args()
    ws = Path(args.workdir)
    ws.mkdir(parents=True, exist_ok=True)
    if not (ws / "profiles").exists():
        shutil.copytree(REPO / "profiles", ws / "profiles")
    rcd = [sys.executable, "-m", "rcdistill.cli"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}
    # the profile with every default spelled out and the overrides applied, validated by rcd itself
    subprocess.run([*rcd, "params", "use", args.params, *(f"--set={item}" for item in args.set)],
                   cwd=ws, env=env, check=True)
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    timings = []
    for name, stage in stages.items():
        cmd = shlex.split(stage["cmd"])
        assert cmd[0] == "rcd", f"stage {name}: not an rcd command"
        t0 = time.perf_counter()
        r = subprocess.run([*rcd, *cmd[1:]], cwd=ws, env=env, capture_output=True, text=True)
        timings.append({"stage": name, "seconds": time.perf_counter() - t0, "rc": r.returncode,
                        "last_line": (r.stdout.strip().splitlines() or [""])[-1][-300:]})
        print(f"{name:<14} {timings[-1]['seconds']:7.1f} s  rc {r.returncode}  {timings[-1]['last_line'][:150]}",
              flush=True)
        if r.returncode:
            timings[-1]["stderr_tail"] = r.stderr[-3000:]
            print(r.stderr[-3000:], file=sys.stderr)
            break
    metrics = {f.stem: json.loads(f.read_text()) for f in sorted((ws / "metrics").glob("*.json"))}
    Path(args.out).write_text(json.dumps({"stages": timings, "metrics": metrics}, indent=2) + "\n")
    sys.exit(max(t["rc"] for t in timings))


if __name__ == "__main__":
    main()
