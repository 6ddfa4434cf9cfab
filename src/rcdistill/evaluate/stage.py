"""Stage `evaluate`: teacher, student and few-step student sampled with the same prompts and seeds
on the `seen` and `unseen` eval sets, at every step count in `evaluate.steps`; FID/KID against
reference images, CLIP score, concept accuracy, diversity (pixel spread across seeds per prompt, at
each model's default steps), milliseconds per image (whole pipeline, CFG passes counted) and per UNet call. Writes metrics/evaluate.json (dvc metrics), quality against steps and
per-concept accuracy (dvc plots), and sample grids (one row per model).

At each model's default steps the eval sets were already drawn by the stage that checked it (teacher
gate, the students' checks): those images are scored when they are exactly what would be drawn here
(eval_samples.py), and one timed batch gives the milliseconds per image."""
from __future__ import annotations

import time
from pathlib import Path

import torch

from ..config import Params
from ..errors import UserError
from ..eval_samples import reuse_samples, sampling_key
from ..images import grid, pil_to_u8, resize_u8
from ..io import atomic_dir, atomic_write_json, atomic_write_text, read_jsonl
from ..roster import BY_NAME, REFERENCE
from ..sampling import generate, image_size
from ..stage_table import eval_samples_file, metrics_file, plot_file
from ..tracking import flatten, stage_run
from ..world.render import render_attributes
from .concepts import concept_accuracy, row_labels
from .diversity import diversity_prompts, seed_spread
from .judges import Judges
from .latency import unet_step_ms
from .metrics import fid, kid
from .models import eval_models
from .report import concept_csv, fewest_steps, quality_vs_steps_csv, vs_teacher

METRICS_FILE = Path(metrics_file("evaluate"))
CONCEPT_PLOT = Path(plot_file("evaluate", 0))
STEPS_PLOT = Path(plot_file("evaluate", 1))
SETS = ("seen", "unseen")


def eval_rows(params: Params, name: str) -> list[dict]:
    path = Path(params.prompts.out_dir) / f"eval_{name}.jsonl"
    if not path.exists():
        raise UserError(f"{path}: eval prompt set not found; run the prompts stage")
    return read_jsonl(path)[: params.evaluate.eval_per_set]


def reference_images(params: Params, rows: list[dict], size: int) -> torch.Tensor | None:
    """World: each eval prompt rendered `reference_per_prompt` times. Real models: reference_dir."""
    cfg = params.evaluate
    if params.prompts.source == "world":
        k = cfg.reference_per_prompt
        labels = {a: v.repeat(k) for a, v in row_labels(rows).items()}
        return render_attributes(labels, seed=7919, image_size=size)
    if not cfg.reference_dir:
        return None
    from PIL import Image

    files = sorted(p for p in Path(cfg.reference_dir).iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    if len(files) < 2:
        raise UserError(f"evaluate.reference_dir: {cfg.reference_dir} holds fewer than 2 images")
    return resize_u8(pil_to_u8([Image.open(f) for f in files]), size)


def score_set(judges: Judges, params: Params, images: torch.Tensor, rows: list[dict], ref_feats) -> tuple[dict, dict]:
    m: dict[str, float] = {}
    if judges.features is not None and ref_feats is not None:
        feats = judges.features(images)
        m["fid"], m["kid"] = fid(feats, ref_feats), kid(feats, ref_feats, params.evaluate.kid_subsets)
    if judges.clip_score is not None:
        m["clip_score"] = judges.clip_score(images, [r["text"] for r in rows])
    per_concept: dict[str, float] = {}
    if judges.classifier is not None:
        per_attr, per_concept = concept_accuracy(judges.classifier.predict(images), rows)
        m.update(per_attr)
    return m, per_concept


def kept_samples(pipe, m, steps: int, set_name: str, rows: list[dict], batch_size: int) -> torch.Tensor | None:
    """The images the stage that checked model `m` drew of this set, when they are exactly what
    sampling it here would draw (eval_samples.py); else None."""
    if steps != m.default_steps:
        return None
    key = sampling_key(pipe, m.path, rows, steps, m.guidance_scale, batch_size)
    images = reuse_samples(eval_samples_file(m.name), set_name, key)
    if images is not None:
        print(f"{m.name} {steps} steps ({set_name}): scored the samples its checking stage drew "
              f"({eval_samples_file(m.name)}, same weights, prompts, seeds and sampler)")
    return images


def time_one_batch(pipe, rows: list[dict], steps: int, guidance_scale: float, batch_size: int) -> tuple[float, int]:
    """Wall seconds and images of sampling the first batch: ms per image when no set was drawn here."""
    rows = rows[:batch_size]
    t0 = time.perf_counter()
    generate(pipe, [r["text"] for r in rows], [r["seed"] for r in rows], steps, guidance_scale, batch_size,
             desc="timing one batch")
    return time.perf_counter() - t0, len(rows)


def diversity(pipe, m, steps: int, rows: list[dict], cfg, batch_size: int) -> dict:
    """Pixel spread across seeds for the set's first prompts (evaluate.diversity_*), with its SE."""
    if not cfg.diversity_prompts or len(rows) < 2:
        return {}
    texts, seeds = diversity_prompts(rows, cfg.diversity_prompts, cfg.diversity_seeds)
    images = generate(pipe, texts, seeds, steps, m.guidance_scale, batch_size, desc=f"{m.name} diversity")
    spread, se = seed_spread(images, cfg.diversity_seeds)
    return {"diversity": spread, "diversity_se": se}


def run_evaluate_stage(params: Params) -> dict:
    cfg, s = params.evaluate, params.sampling
    models = eval_models(params)
    pipes = {m.name: m.load() for m in models}
    size = image_size(pipes[REFERENCE.name])
    for name, pipe in pipes.items():
        if image_size(pipe) != size:
            raise UserError(f"{name}: image size {image_size(pipe)} differs from the {REFERENCE.name}'s {size}")
    judges = Judges(params)
    rows_by_set = {name: rows for name in SETS if (rows := eval_rows(params, name))}
    ref_feats = {}
    for set_name, rows in rows_by_set.items():
        refs = reference_images(params, rows, size)
        ref_feats[set_name] = judges.features(refs) if (refs is not None and judges.features is not None) else None
    results: dict[str, dict] = {m.name: {"steps": {}} for m in models}
    per_concept: dict[str, dict] = {}
    grid_rows: dict[str, list[torch.Tensor]] = {set_name: [] for set_name in rows_by_set}
    k = min([cfg.grid_prompts, *(len(r) for r in rows_by_set.values())])
    with stage_run(params, "evaluate", ("evaluate", "sampling", "world", "consistency")) as log, \
            atomic_dir(cfg.out_dir) as tmp:
        for m in models:
            pipe = pipes[m.name]
            generate(pipe, ["warm-up"], [0], 1, m.guidance_scale, desc=f"{m.name} warm-up")  # first-call costs
            for n in m.steps:
                entry, wall, count = {}, 0.0, 0
                for set_name, rows in rows_by_set.items():
                    images = kept_samples(pipe, m, n, set_name, rows, s.batch_size)
                    if images is None:
                        t0 = time.perf_counter()
                        images = generate(pipe, [r["text"] for r in rows], [r["seed"] for r in rows], n,
                                          m.guidance_scale, s.batch_size, desc=f"{m.name} {n} steps ({set_name})")
                        wall, count = wall + time.perf_counter() - t0, count + len(rows)
                    if ref_feats[set_name] is None and m.name == REFERENCE.name and judges.features is not None:
                        ref_feats[set_name] = judges.features(images)  # real model, no references: FID to the teacher
                    entry[set_name], concepts = score_set(judges, params, images, rows, ref_feats[set_name])
                    if n == m.default_steps:
                        per_concept.setdefault(m.name, {})[set_name] = concepts
                        entry[set_name].update(diversity(pipe, m, n, rows, cfg, s.batch_size))
                        grid_rows[set_name].append(images[:k])
                if not count:  # every set was scored from kept samples: time one batch of the first
                    wall, count = time_one_batch(pipe, next(iter(rows_by_set.values())), n, m.guidance_scale,
                                                 s.batch_size)
                entry["ms_per_image"] = 1000 * wall / max(count, 1)
                results[m.name]["steps"][str(n)] = entry
            ref = results[m.name]["steps"][str(m.default_steps)]
            results[m.name].update({**ref, "default_steps": m.default_steps,
                                    "unet_params": sum(p.numel() for p in pipe.unet.parameters())})

        order = " / ".join(f"{m.name} ({m.default_steps} steps)" for m in models)
        for set_name, rows in rows_by_set.items():
            sheet = grid(torch.cat(grid_rows[set_name]), ncol=k, scale=3)
            sheet.save(tmp / f"grid_{set_name}.png")
            log.image(sheet, f"grid_{set_name}.png")
            atomic_write_text(tmp / f"grid_{set_name}.txt", f"rows, top to bottom: {order}\n"
                              + "\n".join(f"{i + 1}. {r['text']} (seed {r['seed']})" for i, r in enumerate(rows[:k])))
        if grid_rows:
            grid(torch.cat([torch.cat(g) for g in grid_rows.values()]), ncol=k, scale=3).save(tmp / "samples.png")

        ref_name = REFERENCE.name
        t = results[ref_name]
        # UNet-call latency for the models sampled like the reference (same scheduler and CFG pass)
        same = [m.name for m in models if not BY_NAME[m.name].own_sampling]
        te = pipes[ref_name].text_encoder.config
        ms = unet_step_ms({m: pipes[m].unet for m in same}, pipes[ref_name].tokenizer.model_max_length,
                          te.hidden_size, min(s.batch_size, 64), cfg.latency_repeats)
        for m in same:
            results[m]["ms_per_unet_step"] = ms[m]
            results[m]["s_per_image"] = results[m]["ms_per_image"] / 1000
        metrics = dict(results)
        for m in models[1:]:
            r = results[m.name]
            r["param_ratio"] = r["unet_params"] / t["unet_params"]
            r["image_time_ratio"] = r["ms_per_image"] / t["ms_per_image"]
            if m.name in same:
                r["unet_step_ratio"] = r["ms_per_unet_step"] / t["ms_per_unet_step"]
                r["fewest_steps_95"] = fewest_steps(r)
            metrics[f"{m.name}_vs_{ref_name}"] = vs_teacher(r, t)
        if per_concept.get(REFERENCE.name, {}) and judges.classifier is not None:
            atomic_write_text(CONCEPT_PLOT, concept_csv(per_concept))
        else:  # real models: no world classifier, but DVC declares the plot, so it exists with no rows
            atomic_write_text(CONCEPT_PLOT, "concept\n")
        atomic_write_text(STEPS_PLOT, quality_vs_steps_csv(results))
        log({k: v for k, v in flatten(metrics).items() if isinstance(v, (int, float))})
        atomic_write_json(METRICS_FILE, metrics)
    return metrics
