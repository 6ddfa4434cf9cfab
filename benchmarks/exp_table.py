"""Collects one metrics file of named DVC experiments (on the current commit) into a results file.

For tuning runs done with `dvc exp run --temp -n NAME -S ...`: their params overrides and the
metrics a stage wrote, side by side, so the choice they justify is in a committed file.

    .venv/bin/python benchmarks/exp_table.py --metrics metrics/consistency.json \\
        --out benchmarks/results/consistency_rc_prob.json c800 crc03 crc08 cw5
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from headlines import dvc, experiments_on_head  # noqa: E402


def overrides(name: str) -> dict:
    """The params an experiment changed against its baseline (`dvc params diff`)."""
    diff = json.loads(dvc("params", "diff", "HEAD", name, "--json") or "{}")
    return {k: v.get("new") for changes in diff.values() for k, v in changes.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("names", nargs="+")
    ap.add_argument("--metrics", required=True, help="metrics file to take from each experiment")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    exps = experiments_on_head()
    head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    rows = {"baseline": json.loads(Path(args.metrics).read_text())}
    for name in args.names:
        if name not in exps:
            raise SystemExit(f"{name}: no such experiment on {head[:7]}")
        rows[name] = {"overrides": overrides(name), **exps[name].get(args.metrics, {})}
    args.out.write_text(json.dumps({"commit": head, "metrics": args.metrics, "experiments": rows}, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
