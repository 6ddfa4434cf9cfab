"""Where along the sampling trajectory does a teacher lose its colours (or shapes)?

Samples a teacher pipeline with DDIM at several step counts on the `seen` and `unseen` eval sets
(the gate's prompts, seeds and guidance) and, at every step, decodes the scheduler's x0 prediction
and classifies it with the world classifier. A teacher whose final images are worse than its own
early x0 predictions loses accuracy in the late, low-noise steps; one that is already wrong early
on was never right. Writes benchmarks/results/teacher_trajectory.json.

    .venv/bin/python benchmarks/teacher_trajectory.py --teacher models/teacher --steps 4 8 25
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
import rcdistill  # noqa: E402, F401  (offline env and import-time fixes)
from rcdistill.config import load_params  # noqa: E402
from rcdistill.evaluate.concepts import row_labels  # noqa: E402
from rcdistill.evaluators.classifier import accuracy, load_classifier  # noqa: E402
from rcdistill.io import atomic_write_json, read_jsonl  # noqa: E402
from rcdistill.sampling import load_pipeline  # noqa: E402
from rcdistill.teacher.vae import decode  # noqa: E402

OUT = Path("benchmarks/results/teacher_trajectory.json")


@torch.no_grad()
def x0_accuracy_along_trajectory(pipe, rows, classifier, steps: int, guidance: float, batch: int = 128) -> list[dict]:
    """Per DDIM step: the timestep and the classifier's accuracy on the decoded x0 prediction."""
    sched = pipe.scheduler
    sched.set_timesteps(steps)
    per_step: list[list[torch.Tensor]] = [[] for _ in sched.timesteps]
    for s in range(0, len(rows), batch):
        chunk = rows[s: s + batch]
        cond, uncond = pipe.encode_prompt([r["text"] for r in chunk], "cpu", 1, True, [""] * len(chunk))
        size = pipe.unet.config.sample_size
        latents = torch.stack([torch.randn((pipe.unet.config.in_channels, size, size),
                                           generator=torch.Generator().manual_seed(int(r["seed"]))) for r in chunk])
        latents = latents * sched.init_noise_sigma
        embeds = torch.cat([uncond, cond])
        for i, t in enumerate(sched.timesteps):
            eps_u, eps_c = pipe.unet(torch.cat([latents, latents]), t, embeds).sample.chunk(2)
            out = sched.step(eps_u + guidance * (eps_c - eps_u), t, latents)
            latents = out.prev_sample
            per_step[i].append(decode(pipe.vae, out.pred_original_sample))
    labels = row_labels(rows)
    return [{"t": int(t), **{a: round(v, 4) for a, v in accuracy(classifier.predict(torch.cat(imgs)), labels).items()}}
            for t, imgs in zip(sched.timesteps, per_step)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--teacher", default=None, help="pipeline folder (default: teacher.path)")
    ap.add_argument("--steps", type=int, nargs="+", default=[4, 8, 25])
    ap.add_argument("--name", default="default", help="this teacher's name in the results file")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    params = load_params("params.yaml")
    pipe = load_pipeline(args.teacher or params.teacher.path, "ddim")
    classifier = load_classifier(params.evaluators.out_dir)
    prompts = Path(params.prompts.out_dir)
    n = params.teacher.gate.eval_per_set
    result = {"name": args.name, "teacher": args.teacher or params.teacher.path, "eval_per_set": n,
              "guidance_scale": params.sampling.guidance_scale,
              "prediction_type": pipe.scheduler.config.prediction_type, "sets": {}}
    for name in ("seen", "unseen"):
        rows = read_jsonl(prompts / f"eval_{name}.jsonl")[:n]
        result["sets"][name] = {str(k): x0_accuracy_along_trajectory(pipe, rows, classifier, k, params.sampling.guidance_scale)
                                for k in args.steps}
        for k in args.steps:
            traj = result["sets"][name][str(k)]
            print(f"{name} {k:>2} steps: colour " + " ".join(f"{r['colour']:.2f}" for r in traj)
                  + " | shape " + " ".join(f"{r['shape']:.2f}" for r in traj), flush=True)
    rows = json.loads(args.out.read_text())["teachers"] if args.out.exists() else []
    rows = [r for r in rows if r["name"] != args.name] + [result]
    atomic_write_json(args.out, {"host": platform.node(), "teachers": rows})


if __name__ == "__main__":
    main()
