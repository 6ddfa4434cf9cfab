"""Set-level image metrics: FID and KID (clean-fid's formulas on given features), concept accuracy."""
from __future__ import annotations

import numpy as np
import torch
from cleanfid import fid as cleanfid

from ..evaluators.classifier import accuracy
from ..world.vocab import ATTRIBUTES


def fid(feats_a: np.ndarray, feats_b: np.ndarray) -> float:
    return float(cleanfid.fid_from_feats(np.asarray(feats_a, np.float64), np.asarray(feats_b, np.float64)))


def kid(feats_a: np.ndarray, feats_b: np.ndarray, subsets: int, seed: int = 0) -> float:
    """clean-fid's KID draws its subsets from numpy's global RNG: seed it, then put it back."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        size = min(1000, len(feats_a), len(feats_b))
        return float(cleanfid.kernel_distance(np.asarray(feats_a, np.float64), np.asarray(feats_b, np.float64),
                                              num_subsets=subsets, max_subset_size=size))
    finally:
        np.random.set_state(state)


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
