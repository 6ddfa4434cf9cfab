"""Where a stage's fixed cost goes: the seconds each DVC stage spends importing its code before it
does any work, measured in fresh processes (what `dvc repro` pays once per stage).

For every stage in the stage table: a new Python process imports the stage's entry module (its
whole import closure: torch, diffusers, transformers, mlflow, ...), `--repeats` times; the median
is reported, with the stages a held-out experiment reruns summed. Compare with the stage wall
times of benchmarks/results/first_run.json.

    .venv/bin/python benchmarks/stage_overhead.py [--repeats 3] [--out benchmarks/results/stage_overhead.json]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
from rcdistill.stage_table import STAGES  # noqa: E402  (no heavy imports)

# what `dvc exp run -S 'world.unseen=[X]'` reruns from a complete workspace (evaluators and teacher
# know the whole world and stay)
HELDOUT_RERUNS = ("prompts", "teacher_gate", "cache_latents", "distill", "consistency", "evaluate", "register")


def import_seconds(module: str) -> float:
    """Wall seconds of a fresh `python -c 'import rcdistill.cli, <module>'` (the CLI's own fixes first)."""
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", f"import rcdistill.cli, {module}"], check=True, cwd=REPO,
                   env={**os.environ, "PYTHONWARNINGS": "ignore"})
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks/results/stage_overhead.json")
    args = ap.parse_args()
    baseline = statistics.median(import_seconds("sys") for _ in range(args.repeats))  # the CLI alone
    stages = {}
    for s in STAGES:
        stages[s.name] = round(statistics.median(import_seconds(s.entry) for _ in range(args.repeats)), 2)
        print(f"{s.name:14s} {stages[s.name]:5.1f} s", flush=True)
    result = {"date": time.strftime("%Y-%m-%d"), "cores": os.cpu_count(),
              "cpu": platform.processor() or platform.machine(), "repeats": args.repeats,
              "cli_import_s": round(baseline, 2), "stage_import_s": stages,
              "all_stages_s": round(sum(stages.values()), 1),
              "heldout_reruns": list(HELDOUT_RERUNS),
              "heldout_reruns_s": round(sum(stages[n] for n in HELDOUT_RERUNS), 1)}
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
