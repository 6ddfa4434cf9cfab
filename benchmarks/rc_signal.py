"""What a Random Conditioning target says about a concept no cached latent shows (issue 24's diagnosis).

An unpaired RC sample pairs a text with a cached latent that does not show it; the student is
taught the teacher's prediction there. For each concept of the world (every shape and colour),
texts naming it are paired with cached latents that do not show it, noised to t in equal bands of
the schedule, and the teacher's clean-latent prediction x0 (with CFG at sampling.guidance_scale,
and without) is decoded and classified by the world classifier. Per band: the share of x0 that
shows the text's concept (the signal), that keeps the latent's own value of that attribute, and
that shows a third value. Also: the cached latents each concept's texts meet (uniform pairing:
the cache's make-up).

Runs in a workspace after `dvc repro` (teacher, evaluators, prompts, cache):

    .venv/bin/python benchmarks/rc_signal.py [--n 128] [--bands 5] [--seed 0]

Writes benchmarks/results/rc_signal.{json,md}.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import time
from pathlib import Path

import torch

from rcdistill.cache.latents import load_cache
from rcdistill.config import load_params
from rcdistill.distill.data import TextBank
from rcdistill.evaluators.classifier import load_classifier
from rcdistill.io import read_jsonl
from rcdistill.sampling import load_pipeline
from rcdistill.targets import cond_and_uncond
from rcdistill.teacher.vae import decode
from rcdistill.world import ATTRIBUTES, CONCEPTS

OUT = Path("benchmarks/results/rc_signal")


def _se(p: float, n: int) -> float:
    return (p * (1 - p) / n) ** 0.5


@torch.no_grad()
def measure(params, n: int, bands: int, seed: int) -> dict:
    teacher = load_pipeline(params.teacher.path, None)
    unet, vae, sched = teacher.unet.eval(), teacher.vae.eval(), teacher.scheduler
    kind, num_t = sched.config.prediction_type, sched.config.num_train_timesteps
    alphas = sched.alphas_cumprod.sqrt()
    sigmas = (1 - sched.alphas_cumprod).sqrt()
    latents, rows, _ = load_cache(params.cache.out_dir, expect_teacher=params.teacher.path)
    by_text = {r["text"]: r for r in read_jsonl(Path(params.prompts.out_dir) / "cache.jsonl")}
    cached = [by_text[r["prompt"]] for r in rows]
    pool = read_jsonl(Path(params.prompts.out_dir) / "rc.jsonl")
    classifier = load_classifier(params.evaluators.out_dir)
    bank = TextBank(teacher.text_encoder, teacher.tokenizer, [], "off", torch.device("cpu"))
    uncond = bank([""])
    w = params.sampling.guidance_scale
    g = torch.Generator().manual_seed(seed)
    edges = torch.linspace(0, num_t, bands + 1).round().long()
    out: dict = {"guidance_scale": w, "n": n, "bands": [[int(a), int(b) - 1] for a, b in zip(edges[:-1], edges[1:])],
                 "concepts": {}}
    for concept, attr in CONCEPTS.items():
        texts = [r["text"] for r in pool if r[attr] == concept]
        others = [i for i, r in enumerate(cached) if r[attr] != concept]
        met = {v: sum(cached[i][attr] == v for i in others) / len(others) for v in ATTRIBUTES[attr] if v != concept}
        entry = {"attribute": attr, "in_cache": sum(r[attr] == concept for r in cached), "meets": met,
                 "cfg": [], "no_cfg": []}
        for lo, hi in zip(edges[:-1], edges[1:]):
            pick = torch.randint(len(texts), (n,), generator=g)
            idx = torch.tensor(others)[torch.randint(len(others), (n,), generator=g)]
            t = torch.randint(int(lo), int(hi), (n,), generator=g)
            noise = torch.randn((n, *latents.shape[1:]), generator=g)
            a, s = alphas[t].view(-1, 1, 1, 1), sigmas[t].view(-1, 1, 1, 1)
            x = a * latents[idx] + s * noise
            cond = bank([texts[i] for i in pick.tolist()])
            (x0_c, _), (x0_u, _) = cond_and_uncond(unet, kind, x, t, cond, uncond, a, s)
            own = torch.tensor([ATTRIBUTES[attr].index(cached[i][attr]) for i in idx.tolist()])
            target = ATTRIBUTES[attr].index(concept)
            for key, x0 in (("cfg", x0_u + w * (x0_c - x0_u)), ("no_cfg", x0_c)):
                pred = classifier.predict(decode(vae, x0))[attr]
                shows, kept = (pred == target).float().mean().item(), (pred == own).float().mean().item()
                entry[key].append({"shows": shows, "shows_se": _se(shows, n), "kept": kept, "kept_se": _se(kept, n),
                                   "other": 1 - shows - kept})
        out["concepts"][concept] = entry
        print(concept, " ".join(f"{b['shows']:.2f}" for b in entry["cfg"]), flush=True)
    return out


def markdown(res: dict) -> str:
    bands = [f"t {a}-{b}" for a, b in res["bands"]]
    lines = []
    for key, what in (("cfg", f"with CFG {res['guidance_scale']:g} (the default distillation target)"),
                      ("no_cfg", "without CFG")):
        lines += [f"Teacher x0 {what}: share that shows the text's concept / keeps the latent's own value "
                  f"(± standard error, {res['n']} pairs per cell):", "",
                  "| concept | cached latents showing it | " + " | ".join(bands) + " |",
                  "|---|---|" + "---|" * len(bands)]
        for concept, e in res["concepts"].items():
            cells = [f"{b['shows']:.2f} ± {b['shows_se']:.2f} / {b['kept']:.2f}" for b in e[key]]
            lines.append(f"| {concept} | {e['in_cache']} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=128, help="pairs per concept and band")
    ap.add_argument("--bands", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    t0 = time.time()
    params = load_params()
    if params.prompts.source != "world":
        raise SystemExit("rc_signal: needs the world's prompts (prompts.source: world)")
    res = measure(params, args.n, args.bands, args.seed)
    head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    res["meta"] = {"commit": head, "date": time.strftime("%Y-%m-%d"), "cores": os.cpu_count(),
                   "wall_s": round(time.time() - t0, 1), "unseen": params.world.unseen}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.with_suffix(".json").write_text(json.dumps(res, indent=2) + "\n")
    OUT.with_suffix(".md").write_text(f"`benchmarks/rc_signal.py` at {head[:7]} (held out: "
                                      f"{', '.join(params.world.unseen)}):\n\n" + markdown(res))
    print(OUT.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
