"""How well a conditional model's images follow their condition and their text.

Per image: edge F1 against the condition's edge map (1-pixel tolerance), PSNR against the teacher's
image the condition came from, low-resolution consistency (PSNR of the image's own low-res copy
against the condition's), and the world classifier's shape and colour against the prompt. Each
is reported as a mean with its standard error over the images.
"""
from __future__ import annotations

import torch

from ..evaluate.concepts import row_labels
from ..world import ATTRIBUTES
from .conditions import edge_f1, low_res, psnr

ACCURACIES = ("shape", "colour")
MEASURES = ("edge_f1", "psnr", "lowres_psnr")


def _mean_se(x: torch.Tensor) -> tuple[float, float]:
    x = x.double()
    return x.mean().item(), (x.std(unbiased=True) / len(x) ** 0.5).item() if len(x) > 1 else 0.0


def swapped(rows: list[dict], differ: str = "shape") -> tuple[list[int], dict[str, torch.Tensor]]:
    """For condition i, the text of the next row (cyclically) with another `differ` value (the
    attribute a model's text is meant to carry the most: the shape for whole captions, the colour
    for colour-only texts), and the labels an image following both should get: shape, size and
    position from the condition's row, colour from the text's. The cached pairs always agree; this
    is what shows that a model reads its condition and its text, not only one of them."""
    n = len(rows)
    partner = []
    for i, r in enumerate(rows):
        j = next(((i + k) % n for k in range(1, n) if rows[(i + k) % n][differ] != r[differ]), (i + 1) % n)
        partner.append(j)
    labels = row_labels(rows)
    labels["colour"] = labels["colour"][torch.tensor(partner)]
    return partner, labels


def score(images_u8: torch.Tensor, rows: list[dict], teacher_u8: torch.Tensor, edges: torch.Tensor,
          lowres_u8: torch.Tensor, classifier, edge_threshold: float, lowres_factor: int,
          labels: dict[str, torch.Tensor] | None = None) -> dict:
    """Every measure on one eval set: {name: value, name_se: its standard error}. `labels`: what the
    classifier should read (default: the rows' own attributes)."""
    per_image = {
        "edge_f1": edge_f1(images_u8, edges, edge_threshold),
        "psnr": psnr(images_u8, teacher_u8),
        "lowres_psnr": psnr(low_res(images_u8, lowres_factor), lowres_u8),
    }
    pred = None
    if classifier is not None:
        pred, labels = classifier.predict(images_u8), labels if labels is not None else row_labels(rows)
        for a in ACCURACIES:
            per_image[a] = (pred[a] == labels[a]).float()
    out = {"n": len(images_u8)}
    for name, values in per_image.items():
        out[name], out[f"{name}_se"] = _mean_se(values)
        if name in ACCURACIES:
            out[f"{name}_se"] = _accuracy_se(out[name], len(values))
    if pred is not None:
        out["by_concept"] = by_concept(pred, labels)
    return out


def _accuracy_se(p: float, n: int) -> float:
    return (p * (1 - p) / n) ** 0.5 if n else 0.0


def by_concept(pred: dict[str, torch.Tensor], labels: dict[str, torch.Tensor]) -> dict[str, dict]:
    """Shape and colour accuracy on the images that should show each value (`shape.triangle`: the
    conditions that are triangles), and what the classifier read there instead (`read_as`): which
    known shape a model draws from an outline it never saw."""
    out = {}
    for a in ACCURACIES:
        values = ATTRIBUTES[a]
        out[a] = {}
        for i, v in enumerate(values):
            mask = labels[a] == i
            n = int(mask.sum())
            if not n:
                continue
            p = (pred[a][mask] == i).double().mean().item()
            read = torch.bincount(pred[a][mask], minlength=len(values)).tolist()
            out[a][v] = {"n": n, "acc": p, "acc_se": _accuracy_se(p, n),
                         "read_as": {values[j]: c for j, c in enumerate(read) if c and j != i}}
    return out
