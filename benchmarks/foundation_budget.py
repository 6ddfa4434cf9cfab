"""Budget benchmark for the foundation stages: wall time and peak memory of prompts + evaluators + teacher.

Clones the committed project into a scratch folder (the workspace's outputs stay untouched),
runs `dvc repro -s <stage>` for each stage there from scratch, and prints each stage's wall
time and peak RSS (largest process of the stage), the totals, and their ratio to the budget
(15 min, 6 GB on 2 CPU cores).

    .venv/bin/python benchmarks/foundation_budget.py [--keep DIR]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BUDGET_S = 15 * 60
BUDGET_GB = 6.0
STAGES = ("prompts", "evaluators", "teacher", "teacher_gate")


def run_stage(stage: str, cwd: Path) -> tuple[float, float]:
    """Wall seconds and peak RSS (GB) of `dvc repro -s <stage>` (wait4 reports its largest process)."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    t0 = time.perf_counter()
    proc = subprocess.Popen(["dvc", "repro", "-s", stage], cwd=cwd, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"stage {stage} failed (exit {os.waitstatus_to_exitcode(status)})")
    return wall, usage.ru_maxrss / 1024**2  # ru_maxrss is KiB on Linux


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--keep", help="keep the scratch project here (default: a temp dir, removed)")
    ap.add_argument("--out", default="benchmarks/results/foundation_budget.json")
    args = ap.parse_args()
    scratch = Path(args.keep or tempfile.mkdtemp(prefix="rcd-budget-")) / "project"
    subprocess.run(["git", "clone", "-q", str(Path(__file__).resolve().parents[1]), str(scratch)], check=True)
    rows = {}
    try:
        for stage in STAGES:
            wall, peak = run_stage(stage, scratch)
            rows[stage] = {"wall_s": round(wall, 1), "peak_rss_gb": round(peak, 2)}
            print(f"{stage:<11} {wall:8.1f} s  peak {peak:5.2f} GB", flush=True)
        metrics = json.loads((scratch / "metrics/teacher.json").read_text())["teacher"]
    finally:
        if not args.keep:
            shutil.rmtree(scratch.parent, ignore_errors=True)
    total = sum(r["wall_s"] for r in rows.values())
    peak = max(r["peak_rss_gb"] for r in rows.values())
    print(f"{'total':<11} {total:8.1f} s  peak {peak:5.2f} GB")
    print(f"ratio to budget: time {total / BUDGET_S:.2f}x of {BUDGET_S} s, memory {peak / BUDGET_GB:.2f}x of {BUDGET_GB} GB")
    for split in ("seen", "unseen"):
        if split in metrics:
            print(f"teacher gate {split}: shape {metrics[split]['shape']:.3f} colour {metrics[split]['colour']:.3f}")
    result = {"stages": rows, "total_wall_s": total, "peak_rss_gb": peak, "cpus": os.cpu_count(),
              "machine": platform.machine(), "teacher": metrics}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
