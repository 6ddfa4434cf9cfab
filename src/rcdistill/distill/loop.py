"""The distillation loop: accelerate, AdamW + warm-up schedule, clipping, EMA, atomic checkpoints, resume.

Checkpoints are `work_dir/checkpoint-<step>/` (accelerate state: student, optimizer, lr
schedule, RNG states, EMA and the RC sampler), written to a temp folder and renamed; the
newest one is picked up automatically, so a killed run resumes where it stopped and ends
with the same weights as an uninterrupted one.
"""
from __future__ import annotations

import os
import re
import shutil
import time
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from diffusers import DDPMScheduler, UNet2DConditionModel
from diffusers.optimization import get_scheduler
from diffusers.training_utils import EMAModel
from tqdm.auto import tqdm

from ..students import build_student, feature_pairs, init_from_teacher
from .data import RCSampler, TextBank, timestep_weights
from .losses import distill_losses, prediction_target
from .taps import FeatureTaps

_CKPT = re.compile(r"^checkpoint-(\d+)$")


def checkpoints(work_dir: Path) -> list[tuple[int, Path]]:
    if not work_dir.exists():
        return []
    found = [(int(m[1]), p) for p in work_dir.iterdir() if p.is_dir() and (m := _CKPT.match(p.name))]
    return sorted(found)


def _save_checkpoint(accelerator: Accelerator, work_dir: Path, step: int, keep: int) -> None:
    final = work_dir / f"checkpoint-{step}"
    tmp = work_dir / f".checkpoint-{step}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    accelerator.save_state(str(tmp), safe_serialization=True)
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    for _, old in checkpoints(work_dir)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)


def teacher_dtype(name: str, device: torch.device) -> torch.dtype:
    if name == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    return getattr(torch, name)


def distill(cfg, pipe, latents: torch.Tensor, captions: list[str], rc_pool: list[str], log=None,
            stop_after: int | None = None) -> UNet2DConditionModel:
    """Train a student of `pipe.unet`; returns it (EMA weights when cfg.ema). `stop_after` simulates a kill."""
    accelerator = Accelerator(mixed_precision=cfg.mixed_precision, cpu=not torch.cuda.is_available())
    set_seed(cfg.seed)
    device = accelerator.device
    work_dir = Path(cfg.work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)

    teacher = pipe.unet.eval().requires_grad_(False)
    student = build_student(teacher.config, cfg.student)
    init_from_teacher(student, teacher, cfg.student)
    teacher.to(device, teacher_dtype(cfg.teacher_dtype, device))
    text_encoder = pipe.text_encoder.eval().requires_grad_(False).to(device)
    noise_sched = DDPMScheduler.from_config(pipe.scheduler.config)  # same betas and prediction type
    pairs = feature_pairs(teacher, student, cfg.student) if cfg.loss.feat > 0 else []
    t_taps = FeatureTaps(teacher, [t for t, _ in pairs])
    s_taps = FeatureTaps(student, [s for _, s in pairs])

    ema = EMAModel(student.parameters(), decay=cfg.ema_decay, use_ema_warmup=True, power=2 / 3) if cfg.ema else None
    opt = torch.optim.AdamW(student.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    lr_sched = get_scheduler(cfg.lr_schedule, opt, num_warmup_steps=cfg.warmup_steps, num_training_steps=cfg.steps)
    student, opt, lr_sched = accelerator.prepare(student, opt, lr_sched)
    num_t = noise_sched.config.num_train_timesteps
    sampler = RCSampler(latents, captions, rc_pool, cfg.rc_prob, cfg.drop_text,
                        timestep_weights(cfg.timestep_sampler, num_t, cfg.exp_lambda),
                        cfg.seed + accelerator.process_index)  # each data-parallel process draws its own batches
    accelerator.register_for_checkpointing(sampler)
    if ema is not None:
        ema.to(device)
        accelerator.register_for_checkpointing(ema)
    bank = TextBank(text_encoder, pipe.tokenizer, list(captions) + list(rc_pool), cfg.text_embeds, device)

    step = 0
    if found := checkpoints(work_dir):
        step, path = found[-1]
        accelerator.load_state(str(path))
        accelerator.print(f"resuming from {path}")

    bar = tqdm(total=cfg.steps, initial=step, desc=f"distill {cfg.student}", unit="step", mininterval=2,
               disable=not accelerator.is_local_main_process)
    t_last, n_last = time.perf_counter(), 0
    student.train()
    while step < cfg.steps:
        batch = sampler.sample(cfg.batch_size)
        z0, noise = batch.latents.to(device), batch.noise.to(device)
        t = batch.timesteps.to(device)
        cond = bank(batch.texts)
        noisy = noise_sched.add_noise(z0, noise, t)
        with torch.no_grad():
            t_out = teacher(noisy.to(teacher.dtype), t, cond.to(teacher.dtype)).sample
        t_feats = t_taps.take()
        with accelerator.autocast():
            s_out = student(noisy, t, cond).sample
        s_feats = s_taps.take()
        losses = distill_losses(s_out, t_out, prediction_target(noise_sched, z0, noise, t), batch.paired.to(device),
                                s_feats, t_feats, cfg.loss)
        accelerator.backward(losses["total"])
        accelerator.clip_grad_norm_(student.parameters(), cfg.max_grad_norm)
        opt.step()
        lr_sched.step()
        opt.zero_grad(set_to_none=True)
        if ema is not None:
            ema.step(student.parameters())
        step += 1
        n_last += cfg.batch_size
        bar.update(1)
        if step % cfg.log_every == 0 or step == cfg.steps:
            rate = n_last / (time.perf_counter() - t_last)
            t_last, n_last = time.perf_counter(), 0
            values = {k: v.item() for k, v in losses.items()}
            bar.set_postfix(loss=f"{values['total']:.4f}", samples_per_s=f"{rate:.0f}")
            if log and accelerator.is_main_process:
                log({**{f"distill/loss_{k}": v for k, v in values.items()}, "distill/lr": lr_sched.get_last_lr()[0],
                     "distill/samples_per_s": rate, "distill/paired_frac": batch.paired.float().mean().item()}, step)
        if step % cfg.checkpoint_every == 0 or step == cfg.steps:
            accelerator.wait_for_everyone()
            if accelerator.is_main_process:
                _save_checkpoint(accelerator, work_dir, step, cfg.keep_checkpoints)
        if stop_after is not None and step >= stop_after:
            break
    bar.close()
    t_taps.remove()
    s_taps.remove()
    final = accelerator.unwrap_model(student)
    if ema is not None:
        ema.copy_to(final.parameters())
    return final.eval()
