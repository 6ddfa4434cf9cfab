"""What every training stage (distill, consistency) shares: its data, its work dir and process group,
its loss curve, and the saved, checked student pipeline."""
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
from ..eval_samples import EvalSamples, keep_samples
from ..evaluate.concepts import sampled_accuracy
from ..evaluators.classifier import load_classifier
from ..images import grid
from ..io import atomic_dir, atomic_write_json, atomic_write_text, read_jsonl
from ..sampling import generate
from ..stage_table import eval_samples_file
from ..world.vocab import ATTRIBUTES
from .data import matched_partners

LOSS_FIELDS = ("step", "total", "task", "out", "feat", "lr", "samples_per_s")


class LossHistory:
    """Loss curve for `dvc plots`, kept in the work dir so a resumed run continues it: a row for a
    step at or before the last one recorded means the run rewound to a checkpoint."""

    def __init__(self, work_dir: str | Path, log, prefix: str = "distill", fields: tuple[str, ...] = LOSS_FIELDS):
        self.file, self.log = Path(work_dir) / "loss.csv", log
        self.prefix, self.fields = prefix, fields
        self.rows = list(csv.DictReader(self.file.open())) if self.file.exists() else []

    def __call__(self, metrics: dict[str, float], step: int | None = None) -> None:
        if self.log:
            self.log(metrics, step)
        if step is None:
            return
        self.rows = [r for r in self.rows if int(r["step"]) < step]
        p = self.prefix
        values = {k.removeprefix(f"{p}/loss_").removeprefix(f"{p}/"): v for k, v in metrics.items()}
        self.rows.append({"step": step, **{k: f"{values[k]:.6g}" for k in self.fields[1:] if k in values}})
        atomic_write_text(self.file, self.csv())

    def csv(self) -> str:
        buf = io.StringIO()
        w = csv.DictWriter(buf, self.fields, extrasaction="ignore")
        w.writeheader()
        w.writerows(self.rows)
        return buf.getvalue()


def prepare_work_dir(cfg, cache_identity: dict, section: str = "distill", **more) -> None:
    """Checkpoints resume only the same run: other params, another cache or another init start afresh."""
    work = Path(cfg.work_dir)
    ident = {section: cfg.model_dump(exclude={"log_every", "checkpoint_every", "keep_checkpoints"}),
             "cache": cache_identity, "checkpoint_format": 2, **more}  # 2: the RC sampler is stateless
    digest = hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()
    stamp = work / "run.json"
    if stamp.exists() and json.loads(stamp.read_text()).get("digest") != digest:
        shutil.rmtree(work)
    if not stamp.exists():
        atomic_write_json(stamp, {"digest": digest, **ident})


def join_run(cfg, cache_identity: dict, section: str = "distill", **more) -> bool:
    """Prepare the work dir (main process; the others wait for it). True on the main process,
    which alone tracks the run and saves the student; the helpers of a data-parallel launch
    (accelerate launch) only train."""
    from accelerate import PartialState

    # cpu=True is what makes accelerate join a multi-process CPU launch (gloo); without it a torchrun
    # of N CPU processes gives N independent single-process runs
    state = PartialState(cpu=not torch.cuda.is_available())
    if state.is_main_process:
        prepare_work_dir(cfg, cache_identity, section, **more)
    state.wait_for_everyone()
    return state.is_main_process


def student_pipeline(teacher: StableDiffusionPipeline, unet, scheduler=None) -> StableDiffusionPipeline:
    """The student shares VAE, text encoder, tokenizer and (unless given one) scheduler with its teacher."""
    return StableDiffusionPipeline(vae=teacher.vae, text_encoder=teacher.text_encoder, tokenizer=teacher.tokenizer,
                                   unet=unet, scheduler=scheduler or teacher.scheduler, safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False)


def training_data(params: Params):
    """Cached latents, their captions, the RC text pool and the cache's identity."""
    latents, rows, cache_identity = load_cache(params.cache.out_dir, expect_teacher=params.teacher.path)
    rc_pool = [r["text"] for r in read_jsonl(Path(params.prompts.out_dir) / "rc.jsonl")]
    return latents, [r["prompt"] for r in rows], rc_pool, cache_identity


def matched_pairing(params: Params, captions: list[str]) -> list[torch.Tensor] | None:
    """distill.unpaired.pairing: matched: each RC pool text's partners among the cached latents."""
    if params.distill.unpaired.pairing != "matched":  # (params refuse matched without world prompts)
        return None
    folder = Path(params.prompts.out_dir)
    by_text = {r["text"]: r for r in read_jsonl(folder / "cache.jsonl")}
    return matched_partners(read_jsonl(folder / "rc.jsonl"), [by_text[c] for c in captions], tuple(ATTRIBUTES))


def save_checked_student(params: Params, pipe: StableDiffusionPipeline, out_dir: str, metrics: dict, log,
                         steps: int | None = None, guidance_scale: float | None = None,
                         extra_files: dict[str, dict] | None = None, label: str = "student") -> None:
    """Write the pipeline folder atomically, with a first look at its seen/unseen concept accuracy
    (the evaluate stage does the full report) and a sample sheet; `metrics` gains `seen`/`unseen`.
    The samples are kept for `evaluate` under the roster name `label` (eval_samples.py)."""
    pipe.set_progress_bar_config(disable=True)
    s = params.sampling
    steps, guidance_scale = steps or s.steps, s.guidance_scale if guidance_scale is None else guidance_scale
    classifier = load_classifier(params.evaluators.out_dir) if params.prompts.source == "world" else None
    with atomic_dir(out_dir) as tmp:
        pipe.save_pretrained(tmp, safe_serialization=True)
        for name, content in (extra_files or {}).items():
            atomic_write_json(tmp / name, content)
        sets: dict[str, EvalSamples] = {}
        for name in ("seen", "unseen"):
            rows = read_jsonl(Path(params.prompts.out_dir) / f"eval_{name}.jsonl")[: params.teacher.gate.eval_per_set]
            if not rows:
                continue
            if classifier is not None:
                metrics[name], images = sampled_accuracy(pipe, rows, classifier, params, f"{label} check ({name})",
                                                         steps, guidance_scale)
            else:
                rows = rows[:10]
                images = generate(pipe, [r["text"] for r in rows], [r["seed"] for r in rows], steps,
                                  guidance_scale, s.batch_size, desc=f"{label} samples")
            sets[name] = EvalSamples(rows, images)
        keep_samples(eval_samples_file(label), pipe, tmp, sets, s, steps, guidance_scale)
        if sets:
            sheet = grid(torch.cat([e.images[:20] for e in sets.values()]), ncol=10, scale=3)
            sheet.save(tmp / "samples.png")
            log.image(sheet, f"{label}_samples.png")
    for name in ("seen", "unseen"):
        if name in metrics:
            log({f"check.{name}.{a}": v for a, v in metrics[name].items()})
    log({k: v for k, v in metrics.items() if isinstance(v, (int, float))})
