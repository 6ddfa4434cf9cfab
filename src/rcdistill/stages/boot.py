"""Stage `boot`: a one-step student from noise and texts alone (BOOT with Random Conditioning texts).

Reads no latent and no image: the teacher, a list of texts (the RC pool, or the cache captions for
the ablation) and the UNet it starts from. Saved as a StableDiffusionPipeline folder whose
DDIMScheduler reads the student's signal in one step; the teacher's guidance is baked in, so it
samples without a CFG pass (its folder says so). `evaluate` judges it beside the other models."""
from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from ..config import Params
from ..errors import GateFailed, UserError
from ..images import grid
from ..io import atomic_dir, atomic_write_json, atomic_write_text
from ..sampling import DEFAULTS_FILE, generate, load_pipeline
from ..stage_table import metrics_file, plot_file
from ..teacher_verdict import TEACHER_GATE_METRICS, teacher_gate_passed
from ..tracking import stage_run
from ..distill.boot import boot_distill, signal_scheduler
from ..students import load_init_unet
from ..distill.loop import release_checkpoints
from ..distill.training_run import LossHistory, join_run, student_pipeline

METRICS_FILE = Path(metrics_file("boot"))
LOSS_PLOT = Path(plot_file("boot"))
LOSS_FIELDS = ("step", "total", "boot", "boundary", "lr", "samples_per_s")
SHEET_TEXTS = 20


def run(params: Params, args) -> int:
    m = run_boot_stage(params, stop_after=args.stop_after)
    if "helper" in m:
        return 0
    if "stopped_at" in m:
        print(f"stopped after step {m['stopped_at']} (checkpoints in {params.boot.work_dir}/; rerun to resume)")
        return 0
    print(f"one-step student written to {params.boot.out_dir}/ (from {m['n_texts']} {m['text_pool']} texts and "
          f"noise, no latents; guidance {m['guidance_scale']} baked in, no CFG pass)")
    return 0


def text_pool(params: Params) -> list[str]:
    """boot.text_pool: the prompts stage's sorted list of the RC pool's (or the cache's) texts."""
    path = Path(params.prompts.out_dir) / f"{params.boot.text_pool}_texts.txt"
    if not path.is_file():
        raise UserError(f"{path}: missing; run the prompts stage")
    return [line for line in path.read_text().splitlines() if line]


def run_boot_stage(params: Params, stop_after: int | None = None) -> dict:
    cfg = params.boot
    if teacher_gate_passed() is False:
        raise GateFailed(f"{TEACHER_GATE_METRICS}: the teacher failed its quality gate; nothing is distilled from it")
    texts = text_pool(params)
    teacher = load_pipeline(params.teacher.path, params.sampling.scheduler)
    init, init_id = load_init_unet(cfg.init_dir, params.teacher.path, teacher, cfg.student)
    texts_id = {"text_pool": cfg.text_pool, "sha256": hashlib.sha256("\n".join(texts).encode()).hexdigest()}
    if not join_run(cfg, texts_id, "boot", init=init_id):
        boot_distill(cfg, teacher, init, texts, stop_after=stop_after)
        return {"helper": True}
    n_teacher = sum(p.numel() for p in teacher.unet.parameters())
    with stage_run(params, "boot", ("boot", "sampling")) as log:
        log.mlflow.set_tags({"init_dir": cfg.init_dir, "student": str(cfg.student), "text_pool": cfg.text_pool,
                             "init_id": init_id})
        history = LossHistory(cfg.work_dir, log, "boot", LOSS_FIELDS)
        unet, objective = boot_distill(cfg, teacher, init, texts, history, stop_after=stop_after)
        if stop_after is not None and stop_after < cfg.steps:
            return {"stopped_at": stop_after}
        pipe = student_pipeline(teacher, unet.to(teacher.device, torch.float32), signal_scheduler(teacher.scheduler.config))
        metrics = {"init_dir": cfg.init_dir, "student": cfg.student, "text_pool": cfg.text_pool, "n_texts": len(texts),
                   "n_cached_latents": 0,
                   "steps": 1, "guidance_scale": cfg.guidance_scale, "teacher_unet_params": n_teacher,
                   "student_unet_params": sum(p.numel() for p in unet.parameters()),
                   "unet_rows_per_sample": objective.unet_rows_per_sample}
        metrics["param_ratio"] = metrics["student_unet_params"] / n_teacher
        atomic_write_text(LOSS_PLOT, history.csv())
        # one step without a CFG pass; the guidance the teacher gave its targets is recorded beside it
        defaults = {"steps": 1, "guidance_scale": 1.0, "baked_guidance_scale": cfg.guidance_scale}
        pipe.set_progress_bar_config(disable=True)
        with atomic_dir(cfg.out_dir) as tmp:
            pipe.save_pretrained(tmp, safe_serialization=True)
            atomic_write_json(tmp / DEFAULTS_FILE, defaults)
            images = generate(pipe, texts[:SHEET_TEXTS], list(range(SHEET_TEXTS))[: len(texts)], 1, 1.0,
                              desc="boot samples")
            sheet = grid(images, ncol=10, scale=3)
            sheet.save(tmp / "samples.png")
            log.image(sheet, "student_boot_samples.png")
        log({k: v for k, v in metrics.items() if isinstance(v, (int, float))})
        atomic_write_json(METRICS_FILE, {"boot": metrics})
    release_checkpoints(cfg.work_dir)
    return metrics
