"""The training loop every objective shares: accelerate, AdamW + warm-up schedule, clipping, EMA,
atomic checkpoints, automatic resume, MLflow logging, a progress bar.

What is learned is the objective's business (`kd.KDObjective`: Random Conditioning knowledge
distillation; `consistency.ConsistencyObjective`: latent consistency distillation; `boot.BootObjective`:
bootstrapping from noise and texts); the loop only asks it for a loss on each batch.
Checkpoints are `work_dir/checkpoint-<step>/` (accelerate state: student, optimizer, lr schedule,
RNG states and EMA), written by the main process to a temp folder and renamed; the newest one is
picked up automatically, and batch k is drawn from (seed, process, k) alone, so a killed run
(every process of a data-parallel one) resumes where it stopped and ends with the same weights as
an uninterrupted one. Once a stage has written its model, its checkpoints are deleted.
"""
from __future__ import annotations

import os
import re
import shutil
import time
from pathlib import Path
from typing import Protocol

import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState
from accelerate.utils import set_seed
from diffusers.optimization import get_scheduler
from diffusers.training_utils import EMAModel
from tqdm.auto import tqdm

from .data import RCBatch, RCSampler, TextBank
from .speed import make_optimizer, prepare_networks, set_tf32

_CKPT = re.compile(r"^checkpoint-(\d+)$")


class Objective(Protocol):
    name: str                   # progress bar label and MLflow prefix (`<name>/loss_total`, ...)
    student: torch.nn.Module    # the trained network
    ema_warmup: bool            # diffusers EMAModel warm-up (KD) or a plain ramp to the decay (LCM target)

    def loss(self, batch: RCBatch, cond: torch.Tensor, autocast) -> dict[str, torch.Tensor]:
        """Loss terms for one batch; `total` is optimised. `cond`: the batch texts' encoder states."""

    def sync_target(self, ema: EMAModel | None) -> None:
        """Called whenever the EMA weights change (start, resume, every step)."""


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


def release_checkpoints(work_dir: str | Path) -> None:
    """Called once a stage has written its model: the checkpoints could only resume a finished run.
    At SD size each holds weights, EMA and AdamW state (about 7 GB); run.json and loss.csv stay."""
    for _, path in checkpoints(Path(work_dir)):
        shutil.rmtree(path, ignore_errors=True)


def make_accelerator(cfg) -> Accelerator:
    # AcceleratorState is a process-wide singleton that pins mixed_precision; reset it (the
    # process group in PartialState stays) so one process can run loops of different precision.
    AcceleratorState._reset_state()
    accelerator = Accelerator(mixed_precision=cfg.mixed_precision, cpu=not torch.cuda.is_available())
    set_seed(cfg.seed)
    return accelerator


def train(accelerator: Accelerator, cfg, objective: Objective, sampler: RCSampler, bank: TextBank, log=None,
          stop_after: int | None = None) -> torch.nn.Module:
    """Optimise `objective.student` for cfg.steps; returns it (EMA weights when cfg.ema).
    `stop_after` simulates a kill."""
    device = accelerator.device
    work_dir = Path(cfg.work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    set_tf32(cfg, device)
    prepare_networks(cfg, objective)
    student = objective.student
    ema = (EMAModel(student.parameters(), decay=cfg.ema_decay, use_ema_warmup=objective.ema_warmup, power=2 / 3)
           if cfg.ema else None)
    opt = make_optimizer(cfg, student.parameters(), device)
    lr_sched = get_scheduler(cfg.lr_schedule, opt, num_warmup_steps=cfg.warmup_steps, num_training_steps=cfg.steps)
    student, opt, lr_sched = accelerator.prepare(student, opt, lr_sched)
    objective.student = student  # the prepared (e.g. DDP-wrapped) module, so gradients are synchronised
    if ema is not None:
        ema.to(device)
        accelerator.register_for_checkpointing(ema)

    step = 0
    if found := checkpoints(work_dir):
        step, path = found[-1]
        accelerator.load_state(str(path))
        accelerator.print(f"resuming from {path}")
    objective.sync_target(ema)

    bar = tqdm(total=cfg.steps, initial=step, desc=objective.name, unit="step",
               disable=not accelerator.is_local_main_process)
    t_last, n_last = time.perf_counter(), 0
    student.train()
    accelerator.print(f"{objective.name}: {accelerator.num_processes} process(es) x batch {cfg.batch_size}")
    while step < cfg.steps:
        batch = sampler.sample(cfg.batch_size, step)  # a function of (seed, process, step): resumes exactly
        losses = objective.loss(batch, bank(batch.texts), accelerator.autocast)
        accelerator.backward(losses["total"])
        accelerator.clip_grad_norm_(student.parameters(), cfg.max_grad_norm)
        opt.step()
        lr_sched.step()
        opt.zero_grad(set_to_none=True)
        if ema is not None:
            ema.step(student.parameters())
            objective.sync_target(ema)
        step += 1
        n_last += cfg.batch_size
        bar.update(1)
        if step % cfg.log_every == 0 or step == cfg.steps:
            rate = n_last / (time.perf_counter() - t_last)
            t_last, n_last = time.perf_counter(), 0
            values = {k: v.item() for k, v in losses.items()}
            bar.set_postfix(loss=f"{values['total']:.4f}", samples_per_s=f"{rate:.0f}")
            if log and accelerator.is_main_process:
                p = objective.name
                row = {**{f"{p}/loss_{k}": v for k, v in values.items()}, f"{p}/lr": lr_sched.get_last_lr()[0],
                       f"{p}/samples_per_s": rate}
                if hasattr(batch, "paired"):  # an RC batch: the share of captions that match their latent
                    row[f"{p}/paired_frac"] = batch.paired.float().mean().item()
                log(row, step)
        if step % cfg.checkpoint_every == 0 or step == cfg.steps:
            accelerator.wait_for_everyone()
            if accelerator.is_main_process:
                _save_checkpoint(accelerator, work_dir, step, cfg.keep_checkpoints)
        if stop_after is not None and step >= stop_after:
            break
    bar.close()
    final = accelerator.unwrap_model(student)
    if ema is not None:
        ema.copy_to(final.parameters())
    return final.eval()
