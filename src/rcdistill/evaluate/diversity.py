"""Diversity: how much a model's images of one prompt differ from seed to seed. Accuracy alone
cannot see a student that draws the same image for every seed (a risk for one-step students,
which regress onto the teacher's mean); this can."""
from __future__ import annotations

import torch

SEED_STRIDE = 100_000   # extra seeds sit this far from the eval seeds (10_000 + i, 20_000 + i): no overlap


def diversity_prompts(rows: list[dict], n_prompts: int, n_seeds: int) -> tuple[list[str], list[int]]:
    """The first `n_prompts` eval prompts, each `n_seeds` times: its own eval seed, then seeds apart
    from every eval seed. Prompt-major order (prompt 0's seeds first)."""
    texts, seeds = [], []
    for r in rows[:n_prompts]:
        texts += [r["text"]] * n_seeds
        seeds += [int(r["seed"]) + SEED_STRIDE * j for j in range(n_seeds)]
    return texts, seeds


def seed_spread(images: torch.Tensor, n_seeds: int) -> tuple[float, float]:
    """Mean over prompts of the per-pixel standard deviation across seeds (pixels in [0, 1]), and
    its standard error over prompts. `images` is uint8 (prompts * n_seeds, 3, H, W), prompt-major."""
    if len(images) % n_seeds or len(images) < 2 * n_seeds:
        raise ValueError(f"{len(images)} images do not make at least 2 prompts of {n_seeds} seeds")
    x = images.float().div(255).view(len(images) // n_seeds, n_seeds, -1)
    per_prompt = x.std(dim=1, unbiased=False).mean(dim=1)
    return per_prompt.mean().item(), (per_prompt.std() / len(per_prompt) ** 0.5).item()
