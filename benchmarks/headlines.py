"""The headlines, checked with their noise, on the committed pipeline and on a second teacher seed.

Runs (through DVC, so every number comes from the real stages) up to three experiments beside the
workspace's own run (the one that wrote `dvc.lock`):

- `norc`        distillation and few-step distillation without Random Conditioning;
- `seed2`       the whole chain on a teacher trained with another seed (a stand-in for another
                machine, whose CPU gives another teacher from the same code);
- `seed2-norc`  both;
- `heldout-cross` the default chain with another held-out concept (`world.unseen=[cross]`): its wall
                time is what a user pays to try a held-out concept from a complete workspace.

Each is `dvc exp run --temp -n NAME -S ...` (the workspace is left as it is); this script then
reads `metrics/{teacher,evaluate}.json` of the workspace and of every experiment from
`dvc exp show --json`, checks each headline, and writes `benchmarks/results/headlines.{json,md}`.
Every accuracy is a proportion over the eval set, reported with its standard error
sqrt(p(1-p)/n); a headline holds "with margin" when it clears its target by more than two
standard errors.

    .venv/bin/python benchmarks/headlines.py                 # run the experiments, then collect
    .venv/bin/python benchmarks/headlines.py --collect-only  # tables from finished experiments
"""
from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import threading
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from first_run import stage_times  # noqa: E402
from heldout_sweep import dvc, experiments  # noqa: E402  (the one reader of `dvc exp show`)
from stats import se  # noqa: E402

OUT = Path("benchmarks/results/headlines")
SECOND_SEED = 13
NO_RC = ["-S", "distill.rc_prob=0", "-S", "consistency.rc_prob=0"]
EXPERIMENTS = {
    "norc": NO_RC,
    "seed2": ["-S", f"teacher.seed={SECOND_SEED}"],
    "seed2-norc": ["-S", f"teacher.seed={SECOND_SEED}", *NO_RC],
    "heldout-cross": ["-S", "world.unseen=[cross]"],
}
CELLS = [(s, a) for s in ("seen", "unseen") for a in ("shape", "colour")]


def check(name: str, value: float, target: float, noise: float, kind: str) -> dict:
    """kind 'min': value must reach target; 'max': value must stay at or under it. Margin in SEs."""
    margin = value - target if kind == "min" else target - value
    return {"headline": name, "value": round(value, 4), "target": round(target, 4), "kind": kind,
            "se": round(noise, 4), "margin": round(margin, 4), "holds": margin >= 0,
            "with_margin": margin > 2 * noise}


def chain_checks(rc: dict, norc: dict | None, n: int, label: str) -> list[dict]:
    """The headline checks of one teacher: its RC chain (rc) and its no-RC chain (norc), from
    metrics/evaluate.json."""
    teacher, student, fast = rc["teacher"], rc["student"], rc["student_fast"]
    t_shape = teacher["unseen"]["shape"]
    out = [check(f"{label}: RC student unseen shape >= 0.9x teacher ({t_shape:.3f})",
                 student["unseen"]["shape"], 0.9 * t_shape, se(student["unseen"]["shape"], n), "min")]
    for steps, ratio in ((4, 0.9), (2, 0.85)):
        cell = fast["steps"][str(steps)]
        for s, a in CELLS:
            t = teacher[s][a]
            out.append(check(f"{label}: few-step student, {steps} steps, {s} {a} >= {ratio}x teacher ({t:.3f})",
                             cell[s][a], ratio * t, se(cell[s][a], n), "min"))
    if norc is not None:
        r, x = student["unseen"]["shape"], norc["student"]["unseen"]["shape"]
        out.append(check(f"{label}: no-RC student unseen shape <= RC student ({r:.3f}) - 0.30",
                         x, r - 0.30, math.hypot(se(r, n), se(x, n)), "max"))
        r4, x4 = fast["steps"]["4"]["unseen"]["shape"], norc["student_fast"]["steps"]["4"]["unseen"]["shape"]
        out.append(check(f"{label}: no-RC few-step student (4 steps) unseen shape <= RC chain's ({r4:.3f}) - 0.30",
                         x4, r4 - 0.30, math.hypot(se(r4, n), se(x4, n)), "max"))
    return out


def teacher_checks(gate: dict, floors: dict, n: int, label: str) -> list[dict]:
    return [check(f"{label}: teacher gate {s} {a} >= {floors[a]:.2f}", gate[s][a], floors[a], se(gate[s][a], n), "min")
            for s, a in CELLS if s in gate]


def head_commit() -> str:
    return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()


def experiments_on_head() -> dict[str, dict]:
    """name -> {path: metrics} for every experiment on the current commit."""
    found = experiments(json.loads(dvc("exp", "show", "--json") or "[]"), head_commit())
    return {name: {p: (m or {}).get("data") or {} for p, m in (data.get("metrics") or {}).items()}
            for name, data in found.items()}


def collect(params: dict, seconds: dict[str, float], stages: dict[str, dict] | None = None) -> dict:
    n = params["evaluate"]["eval_per_set"]
    n_gate = params["teacher"]["gate"]["eval_per_set"]
    floors = {a: params["teacher"]["gate"][a] for a in ("shape", "colour")}
    workspace = {p: json.loads(Path(p).read_text()) for p in ("metrics/teacher.json", "metrics/evaluate.json",
                                                              "metrics/register.json") if Path(p).exists()}
    exps = experiments_on_head()
    runs = {"default": workspace, **{k: exps[k] for k in EXPERIMENTS if k in exps}}
    checks = teacher_checks(workspace["metrics/teacher.json"]["teacher"], floors, n_gate, f"teacher seed {params['teacher']['seed']}")
    checks += chain_checks(workspace["metrics/evaluate.json"],
                           runs.get("norc", {}).get("metrics/evaluate.json"), n, "default")
    if "seed2" in runs:
        checks += teacher_checks(runs["seed2"]["metrics/teacher.json"]["teacher"], floors, n_gate, f"teacher seed {SECOND_SEED}")
        checks += chain_checks(runs["seed2"]["metrics/evaluate.json"],
                               runs.get("seed2-norc", {}).get("metrics/evaluate.json"), n, f"seed {SECOND_SEED}")
    fast_reg = workspace.get("metrics/register.json", {}).get("student_fast", {})
    if "heldout-cross" in runs:
        t = runs["heldout-cross"]["metrics/evaluate.json"]
        checks.append(check("held out cross: RC student unseen shape >= 0.9x teacher "
                            f"({t['teacher']['unseen']['shape']:.3f})", t["student"]["unseen"]["shape"],
                            0.9 * t["teacher"]["unseen"]["shape"], se(t["student"]["unseen"]["shape"], n), "min"))
    return {"commit": head_commit(), "eval_per_set": n, "gate_eval_per_set": n_gate, "runs": sorted(runs), "missing": sorted(set(EXPERIMENTS) - set(runs)),
            "experiment_wall_s": seconds, "experiment_stages_s": stages or {},
            "few_step_registry": {k: fast_reg.get(k) for k in ("version", "promoted", "reason", "champion_version")},
            "checks": checks, "all_hold": all(c["holds"] for c in checks),
            "all_with_margin": all(c["with_margin"] for c in checks)}


def markdown(result: dict) -> str:
    lines = [f"Commit {result.get('commit', '?')[:7]}: the workspace's run and every experiment on it. "
             f"Eval sets of {result['eval_per_set']} prompts (teacher gate {result['gate_eval_per_set']}); "
             "SE = sqrt(p(1-p)/n), of a difference: both SEs in quadrature. Margin: how far the value clears "
             "its target; 'with margin' means by more than 2 SE.", "",
             "| headline | value | target | SE | margin | holds |", "|---|---|---|---|---|---|"]
    for c in result["checks"]:
        verdict = "yes, > 2 SE" if c["with_margin"] else ("yes, within 2 SE" if c["holds"] else "**no**")
        lines.append(f"| {c['headline']} | {c['value']:.3f} | {c['target']:.3f} | {c['se']:.3f} | {c['margin']:+.3f} | {verdict} |")
    reg = result["few_step_registry"]
    lines += ["", f"Few-step student in the registry (this workspace's run): version {reg.get('version')}, "
              f"promoted: {reg.get('promoted')} ({reg.get('reason')})."]
    if result["experiment_wall_s"]:
        lines.append("Wall time of each experiment (`dvc exp run --temp` from the complete workspace): "
                     + ", ".join(f"{k} {v / 60:.1f} min" for k, v in sorted(result["experiment_wall_s"].items())) + ".")
    for name, times in sorted(result.get("experiment_stages_s", {}).items()):
        lines.append(f"Where {name}'s time goes (s): " + ", ".join(f"{k} {v:.0f}" for k, v in times.items()) + ".")
    if result["missing"]:
        lines.append(f"Not run: {', '.join(result['missing'])}.")
    return "\n".join(lines) + "\n"


def timed_experiment(name: str, timeout_s: float) -> tuple[float, dict[str, float]]:
    """`dvc exp run --temp -n name ...`, its output stamped as it comes: the wall time, and each
    stage's (from its "Running stage" line to the next; what runs before the first is `setup`)."""
    cmd = [sys.executable, "-m", "dvc", "exp", "run", "--temp", "-n", name, *EXPERIMENTS[name]]
    start = time.time()
    stamped = [(start, "start")]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    expired = threading.Event()

    def stop() -> None:  # a hung stage prints nothing: the clock stops it
        expired.set()
        proc.kill()

    watchdog = threading.Timer(timeout_s, stop)
    watchdog.start()
    try:
        for line in proc.stdout:
            stamped.append((time.time(), line.rstrip("\n").split("\r")[-1]))
        rc = proc.wait()
    finally:
        watchdog.cancel()
    if expired.is_set():
        raise SystemExit(f"{name}: still running after {timeout_s:.0f} s (--timeout-s); stopped")
    end = time.time()
    if rc != 0:
        raise SystemExit(f"dvc exp run {name} failed (exit {rc}): {stamped[-1][1]}")
    return round(end - start, 1), {k: round(v, 1) for k, v in stage_times(stamped, end).items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--collect-only", action="store_true", help="only read finished experiments")
    ap.add_argument("--only", nargs="+", choices=sorted(EXPERIMENTS), help="run only these experiments")
    ap.add_argument("--timeout-s", type=float, default=2 * 3600,
                    help="give up on one experiment after this long (a second teacher takes ~15 min on 2 cores)")
    args = ap.parse_args()
    params = yaml.safe_load(Path("params.yaml").read_text())
    old = OUT.with_suffix(".json")
    earlier = json.loads(old.read_text()) if old.exists() else {}
    seconds, stages = earlier.get("experiment_wall_s", {}), earlier.get("experiment_stages_s", {})
    if not args.collect_only:
        done = experiments_on_head()
        for name in args.only or EXPERIMENTS:
            if name in done:
                print(f"{name}: already run on this commit", flush=True)
                continue
            seconds[name], stages[name] = timed_experiment(name, args.timeout_s)
            print(f"{name}: {seconds[name]:.0f} s", flush=True)
    on_head = experiments_on_head()
    result = collect(params, {k: v for k, v in seconds.items() if k in on_head},  # no times of older commits
                     {k: v for k, v in stages.items() if k in on_head})
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    OUT.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
