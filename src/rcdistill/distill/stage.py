"""Stage `distill`: RC distillation of the teacher's UNet into a student pipeline folder."""
from __future__ import annotations

import csv
import hashlib
import io
import json
import shutil
from pathlib import Path

import torch
from diffusers import StableDiffusionPipeline

from ..cache.latents import load_cache
from ..config import Params
from ..images import grid
from ..io import atomic_dir, atomic_write_json, atomic_write_text, read_jsonl
from ..evaluators.classifier import load_classifier
from ..sampling import generate, load_pipeline
from ..teacher.stage import concept_accuracy
from ..tracking import stage_run
from .loop import distill

METRICS_FILE = Path("metrics/distill.json")
LOSS_PLOT = Path("plots/distill_loss.csv")
LOSS_FIELDS = ("step", "total", "task", "out", "feat", "lr", "samples_per_s")


class LossHistory:
    """Loss curve for `dvc plots`, kept in the work dir so a resumed run continues it: a row for a
    step at or before the last one recorded means the run rewound to a checkpoint."""

    def __init__(self, work_dir: str | Path, log):
        self.file, self.log = Path(work_dir) / "loss.csv", log
        self.rows = list(csv.DictReader(self.file.open())) if self.file.exists() else []

    def __call__(self, metrics: dict[str, float], step: int | None = None) -> None:
        if self.log:
            self.log(metrics, step)
        if step is None:
            return
        self.rows = [r for r in self.rows if int(r["step"]) < step]
        values = {k.removeprefix("distill/loss_").removeprefix("distill/"): v for k, v in metrics.items()}
        self.rows.append({"step": step, **{k: f"{values[k]:.6g}" for k in LOSS_FIELDS[1:] if k in values}})
        atomic_write_text(self.file, self.csv())

    def csv(self) -> str:
        buf = io.StringIO()
        w = csv.DictWriter(buf, LOSS_FIELDS, extrasaction="ignore")
        w.writeheader()
        w.writerows(self.rows)
        return buf.getvalue()


def _prepare_work_dir(params: Params, cache_identity: dict) -> None:
    """Checkpoints resume only the same run: other params or another cache start afresh."""
    work = Path(params.distill.work_dir)
    ident = {"distill": params.distill.model_dump(exclude={"log_every", "checkpoint_every", "keep_checkpoints"}),
             "cache": cache_identity}
    digest = hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()
    stamp = work / "run.json"
    if stamp.exists() and json.loads(stamp.read_text()).get("digest") != digest:
        shutil.rmtree(work)
    if not stamp.exists():
        atomic_write_json(stamp, {"digest": digest, **ident})


def student_pipeline(teacher: StableDiffusionPipeline, unet) -> StableDiffusionPipeline:
    """The student shares VAE, text encoder, tokenizer and scheduler with its teacher."""
    return StableDiffusionPipeline(vae=teacher.vae, text_encoder=teacher.text_encoder, tokenizer=teacher.tokenizer,
                                   unet=unet, scheduler=teacher.scheduler, safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False)


def run_distill_stage(params: Params, stop_after: int | None = None) -> dict:
    cfg = params.distill
    latents, rows, cache_identity = load_cache(params.cache.out_dir, expect_teacher=params.teacher.path)
    captions = [r["prompt"] for r in rows]
    rc_pool = [r["text"] for r in read_jsonl(Path(params.prompts.out_dir) / "rc.jsonl")]
    _prepare_work_dir(params, cache_identity)
    teacher = load_pipeline(params.teacher.path, params.sampling.scheduler)
    n_teacher = sum(p.numel() for p in teacher.unet.parameters())
    with stage_run(params, "distill", ("distill", "cache", "sampling")) as log:
        log.mlflow.set_tags({"student": cfg.student, "rc_prob": cfg.rc_prob})
        history = LossHistory(cfg.work_dir, log)
        unet = distill(cfg, teacher, latents, captions, rc_pool, history, stop_after=stop_after)
        if stop_after is not None and stop_after < cfg.steps:
            return {"stopped_at": stop_after}
        pipe = student_pipeline(teacher, unet.to(teacher.device, torch.float32))
        pipe.set_progress_bar_config(disable=True)
        metrics = {"student": cfg.student, "student_unet_params": sum(p.numel() for p in unet.parameters()),
                   "teacher_unet_params": n_teacher, "n_cached_latents": len(latents), "rc_prob": cfg.rc_prob}
        metrics["param_ratio"] = metrics["student_unet_params"] / n_teacher
        atomic_write_text(LOSS_PLOT, history.csv())
        classifier = load_classifier(params.evaluators.out_dir) if params.prompts.source == "world" else None
        with atomic_dir(cfg.out_dir) as tmp:
            pipe.save_pretrained(tmp, safe_serialization=True)
            samples = []
            for name in ("seen", "unseen"):
                rows = read_jsonl(Path(params.prompts.out_dir) / f"eval_{name}.jsonl")[: params.teacher.gate.eval_per_set]
                if not rows:
                    continue
                if classifier is not None:  # a first look; the evaluate stage does the full report
                    metrics[name], images = concept_accuracy(pipe, rows, classifier, params, f"student check ({name})")
                else:
                    s = params.sampling
                    images = generate(pipe, [r["text"] for r in rows[:10]], [r["seed"] for r in rows[:10]], s.steps,
                                      s.guidance_scale, s.batch_size, desc="student samples")
                samples.append(images[:20])
            if samples:
                sheet = grid(torch.cat(samples), ncol=10, scale=3)
                sheet.save(tmp / "samples.png")
                log.image(sheet, "student_samples.png")
        for name in ("seen", "unseen"):
            if name in metrics:
                log({f"check.{name}.{a}": v for a, v in metrics[name].items()})
        log({k: v for k, v in metrics.items() if isinstance(v, (int, float))})
        atomic_write_json(METRICS_FILE, {"distill": metrics})
    return metrics
