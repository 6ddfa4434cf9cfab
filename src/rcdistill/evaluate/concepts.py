"""Concept accuracy with the world classifier: labels of eval rows, accuracy per attribute and per
concept, and the sample-then-classify check that the teacher gate and the distillation stages
run on the seen and unseen eval sets."""
from __future__ import annotations

import torch

from ..config import Params
from ..evaluators.classifier import accuracy
from ..sampling import generate
from ..world.vocab import ATTRIBUTES


def row_labels(rows: list[dict]) -> dict[str, torch.Tensor]:
    return {a: torch.tensor([ATTRIBUTES[a].index(r[a]) for r in rows]) for a in ATTRIBUTES}


def concept_accuracy(pred: dict[str, torch.Tensor], rows: list[dict]) -> tuple[dict[str, float], dict[str, float]]:
    """Accuracy per attribute, and per concept: e.g. `shape=triangle` is the shape accuracy on
    the prompts that ask for a triangle."""
    labels = row_labels(rows)
    per_concept = {}
    for a, values in ATTRIBUTES.items():
        hit = pred[a] == labels[a]
        for i, v in enumerate(values):
            mask = labels[a] == i
            if mask.any():
                per_concept[f"{a}={v}"] = hit[mask].float().mean().item()
    return accuracy(pred, labels), per_concept


def sampled_accuracy(pipe, rows: list[dict], classifier, params: Params, desc: str, steps: int | None = None,
                     guidance_scale: float | None = None) -> tuple[dict[str, float], torch.Tensor]:
    """Classifier accuracy per attribute on samples of `pipe` (default: the `sampling` settings)."""
    s = params.sampling
    images = generate(pipe, [r["text"] for r in rows], [r["seed"] for r in rows], steps or s.steps,
                      s.guidance_scale if guidance_scale is None else guidance_scale, s.batch_size, desc=desc)
    return accuracy(classifier.predict(images), row_labels(rows)), images
