"""Time per UNet call at the sampling batch (classifier-free guidance doubles it), interleaved
teacher/student so that machine noise hits both alike."""
from __future__ import annotations

import statistics
import time

import torch


def _unet_inputs(unet, text_len: int, text_dim: int, batch: int):
    c, h = unet.config.in_channels, unet.config.sample_size
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(batch, c, h, h, generator=gen).to(unet.device, unet.dtype)
    cond = torch.randn(batch, text_len, text_dim, generator=gen).to(unet.device, unet.dtype)
    return x, torch.full((batch,), 500, device=unet.device), cond


def _sync():
    if torch.cuda.is_available():
        torch.cuda.synchronize()


@torch.no_grad()
def unet_step_ms(unets: dict[str, torch.nn.Module], text_len: int, text_dim: int, batch: int,
                 repeats: int) -> dict[str, float]:
    inputs = {k: _unet_inputs(u, text_len, text_dim, 2 * batch) for k, u in unets.items()}
    for k, u in unets.items():  # warm-up
        u(*inputs[k])
    times: dict[str, list[float]] = {k: [] for k in unets}
    for _ in range(repeats):
        for k, u in unets.items():
            _sync()
            t0 = time.perf_counter()
            u(*inputs[k])
            _sync()
            times[k].append((time.perf_counter() - t0) * 1000)
    return {k: statistics.median(v) for k, v in times.items()}
