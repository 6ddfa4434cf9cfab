"""Distillation throughput: our training step against a naive one, same config, same machine, one run.

naive: teacher and student in fp32, every text tokenized and encoded at every step, no caching.
ours:  the real loop (`rcdistill.distill.kd.distill`): text embeddings encoded once (memory
       bank), teacher in `--teacher-dtype` (fp16 on GPU by default), student under
       `--mixed-precision`, EMA and logging included.

Prints samples/s of each and their ratio, and peak memory. Teachers:
  --teacher models/teacher   the toy teacher folder (default; build it with `dvc repro teacher`)
  --teacher sd-random        an SD v1.x-sized UNet with random weights (GPU), with a tiny text encoder/VAE

    .venv/bin/python benchmarks/distill_throughput.py [--steps 30] [--batch-size 64] [--student bk_small]
"""
from __future__ import annotations

import argparse
import json
import platform
import resource
import tempfile
import time
from pathlib import Path

import torch

import rcdistill  # noqa: F401
from rcdistill.config import DistillParams
from rcdistill.distill.data import RCSampler, timestep_weights
from rcdistill.distill.kd import distill
from rcdistill.distill.losses import distill_losses, prediction_target
from rcdistill.distill.taps import FeatureTaps
from rcdistill.sampling import device, load_pipeline
from rcdistill.students import SD_V1_UNET_CONFIG, build_student, feature_pairs, init_from_teacher
from rcdistill.teacher.text_encoder import tokenize


def sd_random_pipeline(folder: Path) -> Path:
    """SD v1 UNet (random init) with the toy tokenizer, a 768-wide text encoder and a small VAE."""
    from diffusers import UNet2DConditionModel

    from rcdistill.config import TextEncoderParams, VaeParams
    from rcdistill.teacher.pipeline import assemble
    from rcdistill.teacher.text_encoder import build_text_encoder
    from rcdistill.teacher.tokenizer import build_tokenizer
    from rcdistill.teacher.vae import build_vae

    tok = build_tokenizer(77)
    te = build_text_encoder(TextEncoderParams(hidden_size=768, layers=2, heads=12, max_length=77), tok)
    vae = build_vae(VaeParams(block_out_channels=[32, 32, 64, 64], latent_channels=4), 512)
    unet = UNet2DConditionModel.from_config(SD_V1_UNET_CONFIG)
    assemble(vae, te, tok, unet).save_pretrained(folder, safe_serialization=True)
    return folder


def naive(cfg: DistillParams, pipe, latents, captions, pool) -> None:
    """The straightforward loop: fp32 everywhere, texts encoded at every step."""
    dev = device()
    teacher = pipe.unet.eval().requires_grad_(False).to(dev, torch.float32)
    student = build_student(teacher.config, cfg.student)
    init_from_teacher(student, teacher, cfg.student)
    student.to(dev).train()
    te = pipe.text_encoder.to(dev, torch.float32).eval()
    pairs = feature_pairs(teacher, student, cfg.student)
    t_taps, s_taps = FeatureTaps(teacher, [a for a, _ in pairs]), FeatureTaps(student, [b for _, b in pairs])
    opt = torch.optim.AdamW(student.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    from diffusers import DDPMScheduler

    sched = DDPMScheduler.from_config(pipe.scheduler.config)
    sampler = RCSampler(latents, captions, pool, cfg.rc_prob, cfg.drop_text,
                        timestep_weights(cfg.timestep_sampler, 1000, cfg.exp_lambda), cfg.seed)
    for _ in range(cfg.steps):
        b = sampler.sample(cfg.batch_size)
        z0, noise, t = b.latents.to(dev), b.noise.to(dev), b.timesteps.to(dev)
        with torch.no_grad():
            cond = te(tokenize(pipe.tokenizer, b.texts).to(dev))[0]
        noisy = sched.add_noise(z0, noise, t)
        with torch.no_grad():
            t_out = teacher(noisy, t, cond).sample
        s_out = student(noisy, t, cond).sample
        losses = distill_losses(s_out, t_out, prediction_target(sched, z0, noise, t), b.paired.to(dev),
                                s_taps.take(), t_taps.take(), cfg.loss)
        losses["total"].backward()
        torch.nn.utils.clip_grad_norm_(student.parameters(), cfg.max_grad_norm)
        opt.step()
        opt.zero_grad(set_to_none=True)


def timed(fn) -> float:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--teacher", default="models/teacher")
    ap.add_argument("--student", default="bk_small")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--teacher-dtype", default="auto")
    ap.add_argument("--mixed-precision", default=None, help="no | fp16 | bf16 (default: fp16 on GPU, no on CPU)")
    ap.add_argument("--out", default="benchmarks/results/distill_throughput.json")
    args = ap.parse_args()
    mp = args.mixed_precision or ("fp16" if torch.cuda.is_available() else "no")

    with tempfile.TemporaryDirectory() as tmp:
        path = sd_random_pipeline(Path(tmp) / "sd") if args.teacher == "sd-random" else Path(args.teacher)
        pipe = load_pipeline(str(path))
        c, h = pipe.unet.config.in_channels, pipe.unet.config.sample_size
        latents = torch.randn(512, c, h, h, generator=torch.Generator().manual_seed(0))
        captions = [f"a large red circle in the center {i}" for i in range(512)]
        pool = [f"{s} {col} triangle, top left" for s in ("a small", "a big", "one tiny") for col in
                ("red", "green", "blue", "yellow", "purple", "cyan")] * 50
        common = dict(student=args.student, steps=args.steps, batch_size=args.batch_size, checkpoint_every=10**9,
                      log_every=10**9, warmup_steps=0)
        naive_cfg = DistillParams(**common, work_dir=str(Path(tmp) / "naive"))
        ours_cfg = DistillParams(**common, work_dir=str(Path(tmp) / "ours"), teacher_dtype=args.teacher_dtype,
                                 mixed_precision=mp, text_embeds="memory")
        t_naive = timed(lambda: naive(naive_cfg, load_pipeline(str(path)), latents, captions, pool))
        peak_naive = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None
        t_ours = timed(lambda: distill(ours_cfg, load_pipeline(str(path)), latents, captions, pool))
        peak_ours = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None

    n = args.steps * args.batch_size
    res = {"teacher": args.teacher, "student": args.student, "steps": args.steps, "batch_size": args.batch_size,
           "device": torch.cuda.get_device_name() if torch.cuda.is_available() else platform.processor() or "cpu",
           "threads": torch.get_num_threads(), "mixed_precision": mp, "teacher_dtype": args.teacher_dtype,
           "naive_samples_per_s": n / t_naive, "ours_samples_per_s": n / t_ours, "ratio": t_naive / t_ours,
           "peak_gpu_gb_naive": peak_naive, "peak_gpu_gb_ours": peak_ours,
           "peak_rss_gb_process": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}
    print(f"naive: {res['naive_samples_per_s']:.1f} samples/s   ours: {res['ours_samples_per_s']:.1f} samples/s   "
          f"ratio {res['ratio']:.2f}x  ({args.steps} steps x batch {args.batch_size}, {res['device']})")
    if peak_ours is not None:
        print(f"peak GPU memory: naive {peak_naive:.1f} GB, ours {peak_ours:.1f} GB")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=2) + "\n")


if __name__ == "__main__":
    main()
