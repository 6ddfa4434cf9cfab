"""The conditions a CoDi model reads, each a deterministic function of an image, and the scores
that check a generated image against its condition.

`edge`: where a pixel differs from its right or lower neighbour by more than a threshold (any
channel): shape, size and position, no colour. `lowres`: the image averaged over f x f blocks
(x f super-resolution). Both are stored as uint8 at their own size; `model_input` turns them
into the [-1, 1] image, at the generated image's size, that the adapter reads.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

TASKS = ("edge", "lowres")


def channels(task: str) -> int:
    return {"edge": 1, "lowres": 3}[task]


def edge_map(images_u8: torch.Tensor, threshold: float) -> torch.Tensor:
    """uint8 (N,3,H,W) -> bool (N,1,H,W): a pixel is an edge where it differs from its right or lower
    neighbour by more than `threshold` (in [0, 1] units) in some channel."""
    x = images_u8.float() / 255.0
    dx = (x[..., :, 1:] - x[..., :, :-1]).abs().amax(1, keepdim=True)
    dy = (x[..., 1:, :] - x[..., :-1, :]).abs().amax(1, keepdim=True)
    edges = torch.zeros_like(x[:, :1], dtype=torch.bool)
    edges[..., :, :-1] |= dx > threshold
    edges[..., :-1, :] |= dy > threshold
    return edges


def low_res(images_u8: torch.Tensor, factor: int) -> torch.Tensor:
    """uint8 (N,3,H,W) -> uint8 (N,3,H/f,W/f), the mean of each f x f block."""
    return F.avg_pool2d(images_u8.float(), factor).round().clamp(0, 255).to(torch.uint8)


def derive(task: str, images_u8: torch.Tensor, edge_threshold: float, lowres_factor: int) -> torch.Tensor:
    """The stored condition of each image: edge maps as uint8 0/255, low-res copies as uint8."""
    if task == "edge":
        return edge_map(images_u8, edge_threshold).to(torch.uint8) * 255
    return low_res(images_u8, lowres_factor)


def model_input(condition_u8: torch.Tensor, size: int) -> torch.Tensor:
    """A stored condition as the adapter's input: float in [-1, 1] at the image size (nearest)."""
    x = condition_u8.float() / 127.5 - 1.0
    return x if x.shape[-1] == size else F.interpolate(x, size=(size, size), mode="nearest")


def edge_f1(generated_u8: torch.Tensor, edges: torch.Tensor, threshold: float, tolerance: int = 1) -> torch.Tensor:
    """Per image F1 of the generated image's edges against the condition's (bool or 0/255), a
    pixel counting as matched when the other map has an edge within `tolerance` pixels."""
    pred = edge_map(generated_u8, threshold).float()
    true = (edges > 0).float()
    k = 2 * tolerance + 1
    near_true = F.max_pool2d(true, k, stride=1, padding=tolerance)
    near_pred = F.max_pool2d(pred, k, stride=1, padding=tolerance)
    tp_p = (pred * near_true).sum((1, 2, 3))
    tp_r = (true * near_pred).sum((1, 2, 3))
    precision = tp_p / pred.sum((1, 2, 3)).clamp(min=1)
    recall = tp_r / true.sum((1, 2, 3)).clamp(min=1)
    f1 = 2 * precision * recall / (precision + recall).clamp(min=1e-8)
    both_empty = (pred.sum((1, 2, 3)) == 0) & (true.sum((1, 2, 3)) == 0)
    return torch.where(both_empty, torch.ones_like(f1), f1)


def psnr(a_u8: torch.Tensor, b_u8: torch.Tensor) -> torch.Tensor:
    """Per image PSNR in dB between two uint8 image batches of one size (peak 1.0)."""
    mse = ((a_u8.float() - b_u8.float()) / 255.0).pow(2).mean((1, 2, 3)).clamp(min=1e-10)
    return 10 * torch.log10(1.0 / mse)


def read_condition(data: bytes, task: str, derive_from_image: bool = False, edge_threshold: float = 0.15,
                   lowres_factor: int = 4, size: int | None = None) -> torch.Tensor:
    """A condition image file (PNG bytes) as the stored uint8 form (C,h,w): an edge map (any pixel
    above mid-grey is an edge) or a low-res RGB copy. `derive_from_image`: the file is an ordinary
    picture of side `size`, and the condition is derived from it as the conditions stage does."""
    import io

    import numpy as np
    from PIL import Image

    image = Image.open(io.BytesIO(data))
    if derive_from_image:
        rgb = image.convert("RGB")
        if size is not None and rgb.size != (size, size):
            rgb = rgb.resize((size, size), Image.BICUBIC)
        u8 = torch.from_numpy(np.array(rgb)).permute(2, 0, 1)[None].contiguous()
        return derive(task, u8, edge_threshold, lowres_factor)[0]
    if task == "edge":
        grey = torch.from_numpy(np.array(image.convert("L")))[None]
        return (grey > 127).to(torch.uint8) * 255
    return torch.from_numpy(np.array(image.convert("RGB"))).permute(2, 0, 1).contiguous()


def condition_png(condition_u8: torch.Tensor) -> bytes:
    """The stored form of one condition (C,h,w uint8) as PNG bytes (what read_condition reads back)."""
    import io

    from PIL import Image

    arr = condition_u8.permute(1, 2, 0).numpy()
    image = Image.fromarray(arr[..., 0] if arr.shape[-1] == 1 else arr)
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def example_condition_png(size: int) -> str:
    """A square outline as a base64 edge-map PNG (the registered model's input example)."""
    import base64

    edges = torch.zeros(1, size, size, dtype=torch.uint8)
    lo, hi = size // 4, 3 * size // 4
    edges[:, lo, lo:hi + 1] = edges[:, hi, lo:hi + 1] = edges[:, lo:hi + 1, lo] = edges[:, lo:hi + 1, hi] = 255
    return base64.b64encode(condition_png(edges)).decode()
