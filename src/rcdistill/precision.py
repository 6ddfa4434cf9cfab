"""Which dtype a frozen network runs in: `auto` is fp16 on CUDA (tensor cores, half the memory)
and fp32 on the CPU (where 16-bit convolutions are slower), or a dtype named outright."""
from __future__ import annotations

import torch


def frozen_dtype(name: str, device: torch.device) -> torch.dtype:
    if name == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    return getattr(torch, name)
