"""Stage `consistency`: a few-step student (LCM) from the frozen teacher, on cached latents and
Random Conditioning texts; starts from the RC student (or the teacher) and is saved as a
StableDiffusionPipeline folder with LCMScheduler that samples in 1-8 steps without a CFG pass."""
from __future__ import annotations

from pathlib import Path

import torch

from ..config import Params
from ..io import atomic_write_json, atomic_write_text
from ..sampling import DEFAULTS_FILE, load_pipeline
from ..stage_table import metrics_file, plot_file
from ..tracking import stage_run
from ..distill.consistency import ConsistencyObjective, consistency_distill, init_unet, lcm_scheduler
from ..distill.loop import release_checkpoints
from ..distill.training_run import LossHistory, join_run, save_checked_student, student_pipeline, training_data

METRICS_FILE = Path(metrics_file("consistency"))
LOSS_PLOT = Path(plot_file("consistency"))
LOSS_FIELDS = ("step", "total", "mse", "lr", "samples_per_s")


def run(params: Params, args) -> int:
    m = run_consistency_stage(params)
    if "helper" in m:
        return 0
    check = "; ".join(f"{n} shape {m[n]['shape']:.3f} colour {m[n]['colour']:.3f}" for n in ("seen", "unseen") if n in m)
    print(f"few-step student written to {params.consistency.out_dir}/ (LCMScheduler, {m['steps']} steps, guidance "
          f"{m['guidance_scale']} embedded, no CFG pass){': ' + check if check else ''}")
    return 0


def run_consistency_stage(params: Params, stop_after: int | None = None) -> dict:
    cfg = params.consistency
    latents, captions, rc_pool, cache_identity = training_data(params)
    teacher = load_pipeline(params.teacher.path, params.sampling.scheduler)
    init, init_id = init_unet(params, teacher)
    if not join_run(cfg, cache_identity, "consistency", init=init_id):
        consistency_distill(cfg, teacher, init, latents, captions, rc_pool, stop_after=stop_after)
        return {"helper": True}
    n_teacher = sum(p.numel() for p in teacher.unet.parameters())
    with stage_run(params, "consistency", ("consistency", "cache", "sampling")) as log:
        log.mlflow.set_tags({"init": cfg.init, "rc_prob": cfg.rc_prob, "init_id": init_id})
        history = LossHistory(cfg.work_dir, log, "consistency", LOSS_FIELDS)
        unet = consistency_distill(cfg, teacher, init, latents, captions, rc_pool, history, stop_after=stop_after)
        if stop_after is not None and stop_after < cfg.steps:
            return {"stopped_at": stop_after}
        pipe = student_pipeline(teacher, unet.to(teacher.device, torch.float32),
                                lcm_scheduler(teacher.scheduler.config, cfg.num_ddim_timesteps))
        metrics = {"init": cfg.init, "student_unet_params": sum(p.numel() for p in unet.parameters()),
                   "teacher_unet_params": n_teacher, "rc_prob": cfg.rc_prob, "steps": cfg.default_steps,
                   "guidance_scale": cfg.guidance_scale, "unet_rows_per_sample": ConsistencyObjective.unet_rows_per_sample}
        metrics["param_ratio"] = metrics["student_unet_params"] / n_teacher
        atomic_write_text(LOSS_PLOT, history.csv())
        defaults = {"steps": cfg.default_steps, "guidance_scale": cfg.guidance_scale}
        save_checked_student(params, pipe, cfg.out_dir, metrics, log, cfg.default_steps, cfg.guidance_scale,
                             {DEFAULTS_FILE: defaults}, label="student_fast")
        atomic_write_json(METRICS_FILE, {"consistency": metrics})
    release_checkpoints(cfg.work_dir)
    return metrics
