"""Stage `distill`: Random Conditioning knowledge distillation into a BK student pipeline."""
from __future__ import annotations

from pathlib import Path

import torch

from ..config import Params
from ..io import atomic_write_json, atomic_write_text
from ..sampling import load_pipeline
from ..stage_table import metrics_file, plot_file
from ..tracking import stage_run
from ..distill.kd import distill
from ..distill.loop import release_checkpoints
from ..distill.training_run import LossHistory, join_run, matched_pairing, save_checked_student, student_pipeline, training_data

METRICS_FILE = Path(metrics_file("distill"))
LOSS_PLOT = Path(plot_file("distill"))


def run(params: Params, args) -> int:
    metrics = run_distill_stage(params, stop_after=args.stop_after)
    if "helper" in metrics:
        return 0  # a data-parallel helper process: the main process reports
    if "stopped_at" in metrics:
        print(f"stopped after step {metrics['stopped_at']} (checkpoints in {params.distill.work_dir}/; rerun to resume)")
        return 0
    print(f"student pipeline written to {params.distill.out_dir}/ ({metrics['student']}: "
          f"{metrics['student_unet_params'] / 1e6:.2f}M UNet parameters, {metrics['param_ratio']:.2f}x the teacher's)")
    return 0


def run_distill_stage(params: Params, stop_after: int | None = None) -> dict:
    cfg = params.distill
    latents, captions, rc_pool, cache_identity = training_data(params)
    main = join_run(cfg, cache_identity)
    teacher = load_pipeline(params.teacher.path, params.sampling.scheduler)
    partners = matched_pairing(params, captions)
    if not main:
        distill(cfg, teacher, latents, captions, rc_pool, stop_after=stop_after, partners=partners)
        return {"helper": True}
    n_teacher = sum(p.numel() for p in teacher.unet.parameters())
    with stage_run(params, "distill", ("distill", "cache", "sampling")) as log:
        log.mlflow.set_tags({"student": cfg.student, "rc_prob": cfg.rc_prob})
        history = LossHistory(cfg.work_dir, log)
        unet = distill(cfg, teacher, latents, captions, rc_pool, history, stop_after=stop_after, partners=partners)
        if stop_after is not None and stop_after < cfg.steps:
            return {"stopped_at": stop_after}
        pipe = student_pipeline(teacher, unet.to(teacher.device, torch.float32))
        metrics = {"student": cfg.student, "student_unet_params": sum(p.numel() for p in unet.parameters()),
                   "teacher_unet_params": n_teacher, "n_cached_latents": len(latents), "rc_prob": cfg.rc_prob}
        metrics["param_ratio"] = metrics["student_unet_params"] / n_teacher
        atomic_write_text(LOSS_PLOT, history.csv())
        save_checked_student(params, pipe, cfg.out_dir, metrics, log)
        atomic_write_json(METRICS_FILE, {"distill": metrics})
    release_checkpoints(cfg.work_dir)
    return metrics
