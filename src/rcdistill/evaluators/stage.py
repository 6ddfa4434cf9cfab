"""Stage `evaluators`: the attribute classifier and the world CLIP, with their accuracies as DVC metrics."""
from __future__ import annotations

from pathlib import Path

from ..config import Params
from ..errors import GateFailed
from ..floors import floor_failures
from ..images import grid
from ..io import atomic_dir, atomic_write_json
from ..stage_table import metrics_file
from ..tracking import stage_run
from ..world.render import random_attributes, render_attributes
from .classifier import save_classifier, train_classifier
from .world_clip import train_world_clip

METRICS_FILE = Path(metrics_file("evaluators"))


def run_evaluators_stage(params: Params) -> dict:
    cfg, size = params.evaluators, params.world.image_size
    with stage_run(params, "evaluators", ("world", "evaluators")) as log, atomic_dir(cfg.out_dir) as tmp:
        classifier, cls_acc = train_classifier(cfg.classifier, cfg.seed, size, log)
        save_classifier(classifier, tmp)
        clip, clip_acc = train_world_clip(cfg.clip, cfg.seed + 1, size, log)
        clip.save(tmp)
        failures = floor_failures({"classifier": cls_acc, "clip_zero_shot": clip_acc}, cfg.gate.model_dump())
        metrics = {"classifier": cls_acc, "clip_zero_shot": clip_acc, "passed": not failures, "failures": failures}
        log({f"classifier.acc.{a}": v for a, v in cls_acc.items()})
        log({f"clip.zero_shot.{a}": v for a, v in clip_acc.items()})
        atomic_write_json(METRICS_FILE, metrics)  # written either way: it says why
        if failures:  # raised inside atomic_dir: the candidate is discarded, the previous judges stay
            raise GateFailed("evaluators gate failed: " + "; ".join(failures) + " (evaluators.gate)")
        renders = render_attributes(random_attributes(40, cfg.seed), cfg.seed, size)
        log.image(grid(renders, ncol=10, scale=3), "world_renders.png")
    return metrics
