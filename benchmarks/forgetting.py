"""When does a student distilled without Random Conditioning lose the held-out concept?

A BK student starts from the teacher's surviving blocks, so it begins knowing every concept; the
question is whether distillation on cached latents that never show the held-out concept erases
it (the paper's no-RC student) and whether RC keeps it. For each named recipe (params overrides:
distillation length, learning rate, student, `distill.init`), this trains an RC student and a
no-RC student with the stage's own `distill()` on the workspace's cache, into temporary folders,
and judges both with the classifier on the `seen` and `unseen` eval sets at the default sampling
settings. Rows are added to (or replace the same name in) benchmarks/results/forgetting.json after
each run, so a killed benchmark resumes. Nothing in the workspace is changed.

    .venv/bin/python benchmarks/forgetting.py base long:distill.steps=2400 scratch:distill.init=random
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
import rcdistill  # noqa: E402, F401  (offline env and import-time fixes)
from rcdistill.config import load_params, parse_set  # noqa: E402
from rcdistill.distill.kd import distill  # noqa: E402
from rcdistill.distill.training_run import student_pipeline, training_data  # noqa: E402
from rcdistill.evaluate.concepts import sampled_accuracy  # noqa: E402
from rcdistill.evaluators.classifier import load_classifier  # noqa: E402
from rcdistill.io import atomic_write_json, read_jsonl  # noqa: E402
from rcdistill.sampling import load_pipeline  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from stats import se  # noqa: E402

OUT = Path("benchmarks/results/forgetting.json")
RC_PROBS = (0.5, 0.0)


def parse_recipe(text: str) -> tuple[str, list[str]]:
    """`name` or `name:key=value,key=value` -> (name, overrides)."""
    name, _, rest = text.partition(":")
    return name, [s for s in rest.split(",") if s]


def run_one(sets: list[str], rc_prob: float, classifier) -> dict:
    params = load_params("params.yaml", parse_set(sets + [f"distill.rc_prob={rc_prob}"]))
    latents, captions, rc_pool, _ = training_data(params)
    teacher = load_pipeline(params.teacher.path, params.sampling.scheduler)
    teacher.set_progress_bar_config(disable=True)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="forgetting-") as work:
        params.distill.work_dir = work
        unet = distill(params.distill, teacher, latents, captions, rc_pool)
    train_s = time.perf_counter() - start
    pipe = student_pipeline(teacher, unet.to(teacher.device, torch.float32))
    pipe.set_progress_bar_config(disable=True)
    out = {"rc_prob": rc_prob, "train_s": round(train_s, 1)}
    for name in ("seen", "unseen"):
        rows = read_jsonl(Path(params.prompts.out_dir) / f"eval_{name}.jsonl")[: params.evaluate.eval_per_set]
        acc, _ = sampled_accuracy(pipe, rows, classifier, params, f"{name} check")
        out[name] = {a: round(acc[a], 4) for a in ("shape", "colour")}
        out[f"n_{name}"] = len(rows)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("recipes", nargs="+", help="name or name:key=value,key=value (params overrides)")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    classifier = load_classifier(load_params("params.yaml").evaluators.out_dir)
    data = json.loads(args.out.read_text()) if args.out.exists() else {"recipes": []}
    for text in args.recipes:
        name, sets = parse_recipe(text)
        done = {(r["name"], r["rc_prob"]): r for r in data["recipes"] if r["overrides"] == sets}
        for rc in RC_PROBS:
            if (name, rc) in done:
                continue
            row = {"name": name, "overrides": sets, **run_one(sets, rc, classifier)}
            data["recipes"] = [r for r in data["recipes"] if (r["name"], r["rc_prob"]) != (name, rc)] + [row]
            data.update(host=platform.node(), cores=os.cpu_count(), threads=torch.get_num_threads())
            atomic_write_json(args.out, data)
            u = row["unseen"]["shape"]
            print(f"{name} rc {rc}: unseen shape {u:.3f} ± {se(u, row['n_unseen']):.3f}, "
                  f"seen shape {row['seen']['shape']:.3f}, trained in {row['train_s']:.0f} s", flush=True)


if __name__ == "__main__":
    main()
