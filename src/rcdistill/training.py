"""The optimizer step and loss logging shared by every small training loop here."""
from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Iterator

import torch

LOG_EVERY = 25


def optimizer_step(loss: torch.Tensor, opt, sched, params=None, max_norm: float | None = None) -> None:
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if max_norm is not None:
        torch.nn.utils.clip_grad_norm_(params, max_norm)
    opt.step()
    sched.step()


def report(step: int, bar, log, metrics: dict[str, float]) -> None:
    """Every LOG_EVERY steps: the first metric on the progress bar, all of them to the run logger."""
    if step % LOG_EVERY:
        return
    first = next(iter(metrics))
    bar.set_postfix({first.split("/")[-1]: f"{metrics[first]:.4f}"})
    if log:
        log(metrics, step)


@contextmanager
def timed(seconds: dict[str, float], phase: str) -> Iterator[None]:
    """Adds the wall time of the block to seconds[phase] (where a stage's time goes)."""
    t0 = time.perf_counter()
    try:
        yield
    finally:
        seconds[phase] = seconds.get(phase, 0.0) + time.perf_counter() - t0
