"""Where a stage's fixed cost goes: the seconds each DVC stage spends importing its code before it
does any work, measured in fresh processes (what `dvc repro` pays once per stage).

For every stage in the stage table: a new Python process imports the stage's entry module (its
whole import closure: torch, diffusers, transformers, mlflow, ...), `--repeats` times; the median
is reported, with the stages a held-out experiment reruns summed; each stage is measured with
cached bytecode and compiling every module (what each process paid before scripts/env.sh let
Python write .pyc files). Compare with the stage wall times of benchmarks/results/first_run.json.

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
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
from rcdistill.stage_table import STAGES  # noqa: E402  (no heavy imports)

# what `dvc exp run -S 'world.unseen=[X]'` reruns from a complete workspace (evaluators and teacher
# know the whole world and stay)
HELDOUT_RERUNS = ("prompts", "teacher_gate", "cache_latents", "distill", "consistency", "evaluate", "register")


def import_seconds(module: str, cached: bool, empty_cache: str) -> float:
    """Wall seconds of a fresh `python -c 'import rcdistill.cli, <module>'` (the CLI's own fixes first).
    cached: Python reads and writes .pyc files as usual (scripts/env.sh allows it); not cached: it
    finds none (an empty PYTHONPYCACHEPREFIX) and writes none, so it compiles every module it imports,
    as every process did under PYTHONDONTWRITEBYTECODE=1 with uv's byte-code-free install."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    if cached:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env.pop("PYTHONPYCACHEPREFIX", None)
    else:
        env.update(PYTHONDONTWRITEBYTECODE="1", PYTHONPYCACHEPREFIX=empty_cache)
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", f"import rcdistill.cli, {module}"], check=True, cwd=REPO, env=env)
    return time.perf_counter() - t0


def median_seconds(module: str, repeats: int, cached: bool, empty_cache: str) -> float:
    if cached:
        import_seconds(module, True, empty_cache)  # the first import writes what is missing
    return round(statistics.median(import_seconds(module, cached, empty_cache) for _ in range(repeats)), 2)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks/results/stage_overhead.json")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as empty:
        baseline = median_seconds("sys", args.repeats, True, empty)  # the CLI alone
        stages, uncached = {}, {}
        for s in STAGES:
            stages[s.name] = median_seconds(s.entry, args.repeats, True, empty)
            uncached[s.name] = median_seconds(s.entry, args.repeats, False, empty)
            print(f"{s.name:14s} {stages[s.name]:5.1f} s with cached bytecode, {uncached[s.name]:5.1f} s compiling",
                  flush=True)
    result = {"date": time.strftime("%Y-%m-%d"), "cores": os.cpu_count(),
              "cpu": platform.processor() or platform.machine(), "repeats": args.repeats,
              "cli_import_s": baseline, "stage_import_s": stages, "stage_import_uncached_s": uncached,
              "all_stages_s": round(sum(stages.values()), 1),
              "all_stages_uncached_s": round(sum(uncached.values()), 1),
              "heldout_reruns": list(HELDOUT_RERUNS),
              "heldout_reruns_s": round(sum(stages[n] for n in HELDOUT_RERUNS), 1),
              "heldout_reruns_uncached_s": round(sum(uncached[n] for n in HELDOUT_RERUNS), 1)}
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
