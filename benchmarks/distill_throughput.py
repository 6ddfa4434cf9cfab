"""Distillation throughput and model FLOPs utilisation: a naive training step against the real
loop under several settings, all in one process on one machine, plus the teacher's latent-caching
rate. The GPU table in README comes from this (run by benchmarks/gpu_check.sh).

naive: teacher and student in fp32, every text tokenized and encoded at every step, plain AdamW.
ours:  the real loop (`rcdistill.distill.kd.distill`): text states encoded once per distinct text
       (memory bank) or per batch (`off`, what the SD profile uses), teacher in the autocast's
       dtype, student under fp16/bf16 autocast, fused AdamW and TF32 on CUDA, EMA, feature taps
       and logging included; `+compile` adds torch.compile of student and teacher.

Each setting runs `--steps` steps after `--warmup` (compiled settings: `--compile-warmup`); the
rate is the median over the timed steps (each step ends on a loss `.item()`, which synchronises),
so warm-up and compilation are excluded; checkpoint writes never happen inside the timed steps.
FLOPs per sample come from torch's FlopCounterMode on one teacher forward and one student forward
and backward; MFU = samples/s x FLOPs per sample / the card's dense 16-bit peak.

    python benchmarks/distill_throughput.py --teacher models/sd_random/teacher \
        --configs naive:16 ours:16:fp16 ours:64:fp16 ours:64:bf16 ours:64:bf16:compile --cache-batch 32

A config is kind:batch[:precision[:compile]]. `--budget-s` skips the settings that would start after
that many seconds (recorded as skipped), so a leased GPU is never overrun.
"""
from __future__ import annotations

import argparse
import gc
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

import rcdistill  # noqa: F401
from rcdistill.config import DistillParams
from rcdistill.distill.data import RCSampler, timestep_weights
from rcdistill.distill.kd import distill
from rcdistill.distill.losses import distill_losses
from rcdistill.distill.taps import FeatureTaps
from rcdistill.sampling import device, generate, load_pipeline
from rcdistill.students import build_student, feature_pairs, init_from_teacher
from rcdistill.targets import prediction_target
from rcdistill.teacher.text_encoder import tokenize

# dense fp16/bf16 tensor-core peaks from the vendors' datasheets (FLOP/s), by device-name substring
PEAK_16BIT = {"H200": 989.4e12, "H100": 989.4e12, "A100": 312e12, "L40S": 362e12, "A10G": 70e12, "4090": 165e12}


def peak_flops() -> float | None:
    if not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name()
    return next((v for k, v in PEAK_16BIT.items() if k in name), None)


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def data(pipe, n: int = 512):
    c, h = pipe.unet.config.in_channels, pipe.unet.config.sample_size
    latents = torch.randn(n, c, h, h, generator=torch.Generator().manual_seed(0))
    captions = [f"a photo of thing number {i} in a city street" for i in range(n)]
    pool = [f"a watercolor of a {a} number {i}" for a in ("cat", "dog", "horse") for i in range(300)]
    return latents, captions, pool


def naive_rates(cfg: DistillParams, pipe, latents, captions, pool, n_steps: int, warmup: int) -> list[float]:
    """The straightforward loop: fp32 everywhere, texts encoded at every step. Samples/s per timed step."""
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
    rates = []
    for step in range(warmup + n_steps):
        sync()
        t0 = time.perf_counter()
        b = sampler.sample(cfg.batch_size, step)
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
        losses["total"].item()
        if step >= warmup:
            rates.append(cfg.batch_size / (time.perf_counter() - t0))
    t_taps.remove()
    s_taps.remove()
    return rates


def ours_rates(cfg: DistillParams, pipe, latents, captions, pool, n_steps: int, warmup: int) -> list[float]:
    """The real loop; `log_every=1` hands over each step's rate (measured after a synchronising .item())."""
    seen: list[float] = []
    # steps = n + 1 with a stop after n: no checkpoint is written at the end of the timed steps
    run = cfg.model_copy(update={"steps": warmup + n_steps + 1, "log_every": 1, "checkpoint_every": 10**9})
    distill(run, pipe, latents, captions, pool, log=lambda m, step: seen.append(m["distill/samples_per_s"]),
            stop_after=warmup + n_steps)
    return seen[warmup:]


def train_flops_per_sample(pipe, student_name: str) -> dict:
    """Teacher forward + student forward and backward for one sample (FlopCounterMode, batch 2)."""
    from torch.utils.flop_counter import FlopCounterMode

    dev = device()
    teacher = pipe.unet.eval().requires_grad_(False).to(dev)
    student = build_student(teacher.config, student_name).to(dev, teacher.dtype)
    c, h = teacher.config.in_channels, teacher.config.sample_size
    x = torch.randn(2, c, h, h, device=dev, dtype=teacher.dtype)
    t = torch.tensor([10, 500], device=dev)
    cond = torch.randn(2, pipe.tokenizer.model_max_length, teacher.config.cross_attention_dim, device=dev,
                       dtype=teacher.dtype)
    with FlopCounterMode(display=False) as fc, torch.no_grad():
        teacher(x, t, cond)
    teacher_f = fc.get_total_flops() / 2  # per sample of the batch of 2
    with FlopCounterMode(display=False) as fc:
        student(x, t, cond).sample.float().square().mean().backward()
    student_f = fc.get_total_flops() / 2
    del student
    return {"teacher_forward": teacher_f, "student_fwd_bwd": student_f, "per_sample": teacher_f + student_f}


def free() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    torch._dynamo.reset()


def caching_rate(path: str, batch: int, steps: int, guidance: float, teacher_flops_fwd: float) -> dict:
    """Latents per second of the cache stage's sampler (DDIM, CFG: two UNet passes per step)."""
    dtype = torch.float16 if torch.cuda.is_available() else torch.float32
    pipe = load_pipeline(path, "ddim", dtype=dtype)
    prompts = [f"a photo of thing number {i}" for i in range(2 * batch)]
    generate(pipe, prompts[:batch], list(range(batch)), steps, guidance, batch, output_type="latent")  # warm-up
    sync()
    t0 = time.perf_counter()
    generate(pipe, prompts[batch:], list(range(batch, 2 * batch)), steps, guidance, batch, output_type="latent")
    sync()
    rate = batch / (time.perf_counter() - t0)
    flops = steps * 2 * teacher_flops_fwd
    peak = peak_flops()
    return {"batch": batch, "steps": steps, "dtype": str(dtype).removeprefix("torch."), "latents_per_s": rate,
            "tflop_per_latent": flops / 1e12, "mfu": rate * flops / peak if peak else None,
            "peak_gpu_gb": torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None}


def parse_config(text: str) -> dict:
    parts = text.split(":")
    if parts[0] not in ("naive", "ours") or len(parts) < 2 or not parts[1].isdigit():
        raise SystemExit(f"--configs: {text!r} is not kind:batch[:precision[:compile]] (kind: naive | ours)")
    precision = parts[2] if len(parts) > 2 else ("fp16" if torch.cuda.is_available() else "no")
    if precision not in ("no", "fp16", "bf16") or (len(parts) > 3 and parts[3] != "compile"):
        raise SystemExit(f"--configs: {text!r}: precision is no | fp16 | bf16, then optionally :compile")
    return {"name": text, "kind": parts[0], "batch": int(parts[1]), "precision": "no" if parts[0] == "naive" else
            precision, "compile": len(parts) > 3}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--teacher", default="models/teacher", help="a pipeline folder (e.g. rcd sd-random's teacher)")
    ap.add_argument("--student", default="bk_small")
    ap.add_argument("--configs", nargs="*", default=["naive:16", "ours:16"])
    ap.add_argument("--steps", type=int, default=10, help="timed steps per setting")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--compile-warmup", type=int, default=3)
    ap.add_argument("--text-embeds", default="off", choices=["off", "memory"])
    ap.add_argument("--cache-batch", type=int, default=0, help="also time latent caching at this batch (0: no)")
    ap.add_argument("--cache-steps", type=int, default=25)
    ap.add_argument("--budget-s", type=float, default=float("inf"),
                    help="start no training setting after this many seconds (the caching rate always runs)")
    ap.add_argument("--out", default="benchmarks/results/distill_throughput.json")
    args = ap.parse_args()
    configs = [parse_config(c) for c in args.configs]
    start = time.perf_counter()

    probe = load_pipeline(args.teacher)
    flops = train_flops_per_sample(probe, args.student)
    latents, captions, pool = data(probe)
    del probe
    free()
    peak = peak_flops()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, c in enumerate(configs):
            if time.perf_counter() - start > args.budget_s:
                rows.append({**c, "skipped": f"time budget of {args.budget_s:.0f} s spent"})
                continue
            t_setting = time.perf_counter()
            dtype = {"no": "float32", "fp16": "float16", "bf16": "bfloat16"}[c["precision"]]
            cfg = DistillParams(student=args.student, batch_size=c["batch"], lr=5e-5, warmup_steps=0,
                                work_dir=str(Path(tmp) / f"run{i}"), mixed_precision=c["precision"],
                                teacher_dtype=dtype, text_embeds=args.text_embeds, compile=c["compile"])
            warmup = args.compile_warmup if c["compile"] else args.warmup
            run = naive_rates if c["kind"] == "naive" else ours_rates
            try:
                rates = run(cfg, load_pipeline(args.teacher), latents, captions, pool, args.steps, warmup)
            except torch.OutOfMemoryError as err:
                rows.append({**c, "error": f"out of memory: {str(err).splitlines()[0]}"})
                free()
                continue
            rate = statistics.median(rates)
            rows.append({**c, "samples_per_s": rate, "setting_wall_s": time.perf_counter() - t_setting,
                         "mfu": rate * flops["per_sample"] / peak if peak else None,
                         "peak_gpu_gb": torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None})
            r = rows[-1]
            print(f"{c['name']:<24} {rate:8.1f} samples/s" + (f"  MFU {r['mfu']:.1%}" if r["mfu"] else "")
                  + (f"  peak {r['peak_gpu_gb']:.1f} GB" if r["peak_gpu_gb"] else "")
                  + f"  ({r['setting_wall_s']:.0f} s)", flush=True)
            free()
    cache = None
    if args.cache_batch:
        cache = caching_rate(args.teacher, args.cache_batch, args.cache_steps, 7.5, flops["teacher_forward"])
        print(f"latent caching: {cache['latents_per_s']:.2f} latents/s at batch {cache['batch']}, {cache['steps']} "
              f"DDIM steps with CFG" + (f", MFU {cache['mfu']:.1%}" if cache["mfu"] else ""), flush=True)

    naive = next((r for r in rows if r["kind"] == "naive" and "samples_per_s" in r), None)
    for r in rows:
        if naive and "samples_per_s" in r:
            r["vs_naive"] = r["samples_per_s"] / naive["samples_per_s"]
    res = {"device": torch.cuda.get_device_name() if torch.cuda.is_available() else platform.processor() or "cpu",
           "torch": torch.__version__, "teacher": args.teacher, "student": args.student,
           "latent_size": latents.shape[-1], "text_embeds": args.text_embeds, "timed_steps": args.steps,
           "peak_16bit_flops": peak, "flops": flops, "settings": rows, "caching": cache,
           "wall_s": time.perf_counter() - start}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=2) + "\n")
    print(f"wrote {args.out} ({res['wall_s']:.0f} s)")


if __name__ == "__main__":
    main()
