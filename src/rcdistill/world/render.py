"""Deterministic, batched, anti-aliased renderer of one-shape images.

Shapes are signed-distance functions evaluated on a 4x supersampled grid and box-filtered
down, so edges are anti-aliased and a whole batch renders as a few tensor ops.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .vocab import ATTRIBUTES, BACKGROUND_RGB, COLOURS, POSITIONS, RGB, SHAPES

SUPERSAMPLE = 4
# Geometry on a 32-pixel canvas; other sizes scale it. Canvases under 32 px draw the shapes
# relatively larger: at 16 px the 32-canvas radii leave a small circle, diamond and cross a few
# pixels wide and hard to tell apart (seen in a contact sheet), so they get their own radii.
_RADIUS = {"small": 4.5, "large": 7.5}
_RADIUS_COMPACT = {"small": 6.0, "large": 8.0}  # image_size < 32
_CENTRES = {
    "center": (16.0, 16.0),
    "top left": (9.5, 9.5),
    "top right": (22.5, 9.5),
    "bottom left": (9.5, 22.5),
    "bottom right": (22.5, 22.5),
}
_JITTER_PX = 1.0  # centre jitter, in 32-canvas pixels
_SCALE_JITTER = 0.08
_COLOUR_JITTER = 14.0


def _sdf(shape: str, px: torch.Tensor, py: torch.Tensor, r: torch.Tensor, compact: bool = False) -> torch.Tensor:
    """Signed distance (negative inside) of one shape, centred at the origin, radius r. On compact
    canvases the diamond is a tall rhombus: a square one a few pixels wide reads as a circle (the
    16x16 teacher drew it right 78% of the time, against 88-100% for the other shapes)."""
    ax, ay = px.abs(), py.abs()
    if shape == "circle":
        return torch.sqrt(px**2 + py**2) - r
    if shape == "square":
        return torch.maximum(ax, ay) - 0.85 * r
    if shape == "triangle":  # equilateral, pointing up (y grows downwards), circumradius 1.15 r
        big_r = 1.15 * r
        return torch.maximum((math.sqrt(3) * ax - py) / 2 - big_r / 2, py - big_r / 2)
    if shape == "diamond" and compact:  # half-width 0.7 r, half-height 1.1 r
        return (ax / 0.7 + ay / 1.1) - r
    if shape == "diamond":
        return (ax + ay) / math.sqrt(2) - 0.82 * r
    if shape == "cross":
        w = 0.36 * r
        return torch.minimum(torch.maximum(ax - w, ay - r), torch.maximum(ax - r, ay - w))
    raise ValueError(f"unknown shape {shape!r}")


def render(
    shape: torch.Tensor,
    colour: torch.Tensor,
    size: torch.Tensor,
    position: torch.Tensor,
    seed: int,
    image_size: int = 32,
    chunk: int = 256,
) -> torch.Tensor:
    """Render images for attribute index tensors (N,) -> uint8 tensor (N, 3, H, W).

    The same indices and seed always give the same pixels.
    """
    n = shape.numel()
    gen = torch.Generator().manual_seed(int(seed))
    jitter = (torch.rand(n, 2, generator=gen) * 2 - 1) * _JITTER_PX
    scale = 1 + (torch.rand(n, generator=gen) * 2 - 1) * _SCALE_JITTER
    cjit = (torch.rand(n, 3, generator=gen) * 2 - 1) * _COLOUR_JITTER

    k = image_size / 32.0
    centres = torch.tensor([_CENTRES[p] for p in POSITIONS])[position] + jitter
    compact = image_size < 32
    radii = _RADIUS_COMPACT if compact else _RADIUS
    radius = torch.tensor([radii["small"], radii["large"]])[size] * scale
    rgb = (torch.tensor([RGB[c] for c in COLOURS], dtype=torch.float32)[colour] + cjit).clamp(0, 255)
    bg = torch.tensor(BACKGROUND_RGB, dtype=torch.float32).view(1, 3, 1, 1)

    hi = image_size * SUPERSAMPLE
    coords = (torch.arange(hi, dtype=torch.float32) + 0.5) / SUPERSAMPLE / k  # in 32-canvas units
    out = torch.empty(n, 3, image_size, image_size, dtype=torch.uint8)
    for shape_id, name in enumerate(SHAPES):  # one SDF per group of same-shape images
        rows = (shape == shape_id).nonzero().flatten()
        for s in range(0, len(rows), chunk):
            idx = rows[s: s + chunk]
            px = coords.view(1, 1, hi) - centres[idx, 0].view(-1, 1, 1)
            py = coords.view(1, hi, 1) - centres[idx, 1].view(-1, 1, 1)
            inside = (_sdf(name, px, py, radius[idx].view(-1, 1, 1), compact) <= 0).float()
            alpha = F.avg_pool2d(inside.unsqueeze(1), SUPERSAMPLE)  # (b,1,H,W) coverage
            img = bg * (1 - alpha) + rgb[idx].view(-1, 3, 1, 1) * alpha
            out[idx] = img.round().clamp(0, 255).to(torch.uint8)
    return out


def random_attributes(n: int, seed: int, shapes: list[int] | None = None) -> dict[str, torch.Tensor]:
    """Uniformly random attribute indices; `shapes` restricts the shape choice."""
    gen = torch.Generator().manual_seed(int(seed))
    attrs = {a: torch.randint(len(v), (n,), generator=gen) for a, v in ATTRIBUTES.items()}
    if shapes is not None:
        allowed = torch.tensor(shapes)
        attrs["shape"] = allowed[torch.randint(len(shapes), (n,), generator=gen)]
    return attrs


def render_attributes(attrs: dict[str, torch.Tensor], seed: int, image_size: int = 32) -> torch.Tensor:
    return render(attrs["shape"], attrs["colour"], attrs["size"], attrs["position"], seed, image_size)
