"""Image tensor conversions shared by the world, the evaluators and the samplers."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image


def to_unit(images_u8: torch.Tensor) -> torch.Tensor:
    """uint8 (N,3,H,W) -> float in [0, 1]."""
    return images_u8.float() / 255.0


def pil_to_u8(images: list[Image.Image]) -> torch.Tensor:
    return torch.from_numpy(np.stack([np.asarray(im.convert("RGB")) for im in images])).permute(0, 3, 1, 2).contiguous()


def u8_to_pil(images_u8: torch.Tensor) -> list[Image.Image]:
    return [Image.fromarray(x.permute(1, 2, 0).cpu().numpy()) for x in images_u8]


def resize_u8(images_u8: torch.Tensor, size: int) -> torch.Tensor:
    if images_u8.shape[-1] == size:
        return images_u8
    x = F.interpolate(images_u8.float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return x.round().clamp(0, 255).to(torch.uint8)


def grid(images_u8: torch.Tensor, ncol: int, scale: int = 1, pad: int = 2) -> Image.Image:
    """Tile (N,3,H,W) uint8 images into one PIL image, upscaled with nearest neighbour."""
    n, _, h, w = images_u8.shape
    nrow = (n + ncol - 1) // ncol
    canvas = torch.full((3, nrow * (h + pad) + pad, ncol * (w + pad) + pad), 255, dtype=torch.uint8)
    for i in range(n):
        r, c = divmod(i, ncol)
        canvas[:, pad + r * (h + pad): pad + r * (h + pad) + h, pad + c * (w + pad): pad + c * (w + pad) + w] = images_u8[i]
    im = Image.fromarray(canvas.permute(1, 2, 0).numpy())
    return im.resize((im.width * scale, im.height * scale), Image.NEAREST) if scale > 1 else im
