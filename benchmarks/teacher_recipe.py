"""Where the first run's time goes, part 2: can a shorter toy-teacher recipe still pass its gate?

Trains the teacher with the real stage code (`train_toy_teacher`) and params.yaml plus the given
overrides, into a temporary folder, times each phase (render, VAE, text encoder, encode, UNet,
save), then judges it with the real gate (`judge_teacher`: the classifier on teacher samples of the
`seen` and `unseen` eval sets). One recipe per call; the row is added to (or replaces the same
name in) benchmarks/results/teacher_recipe.json. Needs a workspace where `evaluators` and `prompts`
have run. Nothing in the workspace is changed.

    .venv/bin/python benchmarks/teacher_recipe.py short --set teacher.vae.steps=400 --set teacher.unet.steps=1000
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
import rcdistill  # noqa: E402, F401  (offline env and import-time fixes)
from rcdistill.config import load_params, parse_set  # noqa: E402
from rcdistill.evaluators.classifier import load_classifier  # noqa: E402
from rcdistill.io import atomic_write_json  # noqa: E402
from rcdistill.sampling import load_pipeline  # noqa: E402
from rcdistill.teacher.gate import judge_teacher  # noqa: E402
from rcdistill.teacher.stage import train_toy_teacher  # noqa: E402

OUT = Path("benchmarks/results/teacher_recipe.json")


def judge_at_steps(pipe, params, classifier, steps: list[int]) -> dict[int, dict]:
    """The gate's accuracies at each DDIM step count (a teacher whose colours drift with steps
    passes at one count and fails at another)."""
    default, out = params.sampling.steps, {}
    for k in steps:
        params.sampling.steps = k
        metrics, _, _ = judge_teacher(pipe, params, classifier)
        out[k] = {s: metrics[s] for s in ("seen", "unseen") if s in metrics}
    params.sampling.steps = default
    return out


def drift(by_steps: dict[int, dict]) -> dict[str, float]:
    """Largest minus smallest accuracy across step counts, per eval set and attribute."""
    cells = {(s, a) for row in by_steps.values() for s in row for a in ("shape", "colour")}
    return {f"{s}.{a}": round(max(r[s][a] for r in by_steps.values()) - min(r[s][a] for r in by_steps.values()), 4)
            for s, a in sorted(cells)}


def run_recipe(name: str, sets: list[str], steps: list[int], keep: Path | None = None) -> dict:
    params = load_params("params.yaml", parse_set(sets))
    seconds: dict[str, float] = {}
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="teacher-recipe-") as tmp:
        checks = train_toy_teacher(params, Path(tmp), lambda *a, **k: None, seconds)
        pipe = load_pipeline(tmp, params.sampling.scheduler)
        t0 = time.perf_counter()
        classifier = load_classifier(params.evaluators.out_dir)
        metrics, failures, _ = judge_teacher(pipe, params, classifier)
        seconds["gate"] = time.perf_counter() - t0
        by_steps = judge_at_steps(pipe, params, classifier, [k for k in steps if k != params.sampling.steps])
        by_steps[params.sampling.steps] = {s: metrics[s] for s in ("seen", "unseen") if s in metrics}
        by_steps = dict(sorted(by_steps.items()))
        if keep:  # e.g. for benchmarks/teacher_trajectory.py
            shutil.copytree(tmp, keep, dirs_exist_ok=True)
    n = params.teacher.gate.eval_per_set
    return {"name": name, "overrides": sets, "unet_steps": params.teacher.unet.steps,
            "teacher_unet": params.teacher.unet.model_dump(), "vae": params.teacher.vae.model_dump(),
            "eval_per_set": n, "by_steps": by_steps, "drift": drift(by_steps),
            "vae_steps": params.teacher.vae.steps, "seconds": {k: round(v, 1) for k, v in seconds.items()},
            "total_s": round(time.perf_counter() - start, 1), "checks": checks, "gate": {**metrics, "failures": failures},
            "cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("name", help="the recipe's name in the results file")
    ap.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                    help="params override, as `rcd params use --set` (repeatable)")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--steps", type=int, nargs="+", default=[4, 8, 25],
                    help="DDIM step counts the gate is also measured at (drift across steps)")
    ap.add_argument("--keep", type=Path, help="copy the candidate's pipeline folder here")
    args = ap.parse_args()
    row = run_recipe(args.name, args.sets, args.steps, args.keep)
    old = json.loads(args.out.read_text()) if args.out.exists() else {}
    rows = [r for r in old.get("recipes", []) if r["name"] != args.name] + [row]
    # other keys (e.g. a note on how earlier rows were run) are kept
    atomic_write_json(args.out, {**old, "host": platform.node(), "cores": os.cpu_count(), "recipes": rows})
    g = row["gate"]
    print(f"{args.name}: {row['total_s']:.0f} s (unet {row['seconds']['unet']:.0f} s, vae {row['seconds']['vae']:.0f} s); "
          + "; ".join(f"{s} shape {g[s]['shape']:.3f} colour {g[s]['colour']:.3f}" for s in ("seen", "unseen") if s in g)
          + f"; gate {'passed' if g['passed'] else 'failed: ' + ', '.join(g['failures'])}"
          + f"; largest drift across {args.steps} steps {max(row['drift'].values()):.3f}")


if __name__ == "__main__":
    main()
