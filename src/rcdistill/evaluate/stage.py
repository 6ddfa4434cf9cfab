"""Stage `evaluate`: teacher and student sampled with the same prompts and seeds on the `seen`
and `unseen` eval sets; FID/KID against reference images, CLIP score, concept accuracy,
time per image and per UNet call. Writes metrics/evaluate.json (dvc metrics), per-concept
accuracy (dvc plots) and side-by-side sample grids."""
from __future__ import annotations

import csv
import io
import time
from pathlib import Path

import torch

from ..config import Params
from ..errors import UserError
from ..images import grid, pil_to_u8, resize_u8
from ..io import atomic_dir, atomic_write_json, atomic_write_text, read_jsonl
from ..sampling import generate, image_size, load_pipeline
from ..tracking import flatten, stage_run
from ..world.render import render_attributes
from .judges import Judges
from .latency import unet_step_ms
from .metrics import concept_accuracy, fid, kid, row_labels

METRICS_FILE = Path("metrics/evaluate.json")
CONCEPT_PLOT = Path("plots/concept_accuracy.csv")
MODELS = ("teacher", "student")


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


def write_concept_plot(per_concept: dict[str, dict[str, dict[str, float]]]) -> None:
    """One row per (set, concept) with teacher and student accuracy side by side."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["concept", *MODELS])
    for set_name, concepts in per_concept["teacher"].items():
        for concept, acc in concepts.items():
            w.writerow([f"{set_name} {concept}", f"{acc:.4f}", f"{per_concept['student'][set_name][concept]:.4f}"])
    atomic_write_text(CONCEPT_PLOT, buf.getvalue())


def run_evaluate_stage(params: Params) -> dict:
    cfg, s = params.evaluate, params.sampling
    pipes = {"teacher": load_pipeline(params.teacher.path, s.scheduler),
             "student": load_pipeline(params.distill.out_dir, s.scheduler)}
    size = image_size(pipes["teacher"])
    if image_size(pipes["student"]) != size:
        raise UserError(f"{params.distill.out_dir}: student image size differs from the teacher's")
    judges = Judges(params)
    results: dict[str, dict] = {m: {} for m in MODELS}
    per_concept: dict[str, dict] = {m: {} for m in MODELS}
    wall = {m: 0.0 for m in MODELS}
    count = 0
    rows_by_set = {name: eval_rows(params, name) for name in ("seen", "unseen")}
    with stage_run(params, "evaluate", ("evaluate", "sampling", "world")) as log, atomic_dir(cfg.out_dir) as tmp:
        sheets = []
        for set_name, rows in rows_by_set.items():
            if not rows:
                continue
            refs = reference_images(params, rows, size)
            ref_feats = judges.features(refs) if (refs is not None and judges.features is not None) else None
            images = {}
            for m, pipe in pipes.items():
                t0 = time.perf_counter()
                images[m] = generate(pipe, [r["text"] for r in rows], [r["seed"] for r in rows], s.steps,
                                     s.guidance_scale, s.batch_size, desc=f"{m} ({set_name})")
                wall[m] += time.perf_counter() - t0
                if refs is None and m == "teacher":  # real model, no reference folder: FID to the teacher
                    ref_feats = judges.features(images[m]) if judges.features is not None else None
                results[m][set_name], per_concept[m][set_name] = score_set(judges, params, images[m], rows, ref_feats)
            count += len(rows)
            k = min(cfg.grid_prompts, len(rows))
            pair = torch.cat([images["teacher"][:k], images["student"][:k]])
            sheet = grid(pair, ncol=k, scale=3)
            sheet.save(tmp / f"grid_{set_name}.png")
            log.image(sheet, f"grid_{set_name}.png")
            sheets.append(pair)
            atomic_write_text(tmp / f"grid_{set_name}.txt", "top row: teacher, bottom row: student\n"
                              + "\n".join(f"{i + 1}. {r['text']} (seed {r['seed']})" for i, r in enumerate(rows[:k])))
        if sheets:
            grid(torch.cat(sheets), ncol=min(cfg.grid_prompts, len(sheets[0]) // 2), scale=3).save(tmp / "samples.png")

        te = pipes["teacher"].text_encoder.config
        ms = unet_step_ms({m: p.unet for m, p in pipes.items()}, pipes["teacher"].tokenizer.model_max_length,
                          te.hidden_size, min(s.batch_size, 64), cfg.latency_repeats)
        for m, pipe in pipes.items():
            results[m]["unet_params"] = sum(p.numel() for p in pipe.unet.parameters())
            results[m]["ms_per_unet_step"] = ms[m]
            results[m]["s_per_image"] = wall[m] / max(count, 1)
        st, tc = results["student"], results["teacher"]
        st["unet_step_ratio"] = st["ms_per_unet_step"] / tc["ms_per_unet_step"]
        st["param_ratio"] = st["unet_params"] / tc["unet_params"]
        st["image_time_ratio"] = st["s_per_image"] / tc["s_per_image"]
        relative = {f"{set_name}.{k}": st[set_name][k] / v for set_name in rows_by_set if set_name in tc
                    for k, v in tc[set_name].items() if k in ("shape", "colour") and v > 0}
        metrics = {"teacher": tc, "student": st, "student_vs_teacher": relative}
        if per_concept["teacher"]:
            write_concept_plot(per_concept)
        log(flatten(metrics))
        atomic_write_json(METRICS_FILE, metrics)
    return metrics
