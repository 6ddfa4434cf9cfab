"""Random Conditioning batches from cached latents.

Each sample is a cached latent and its caption; with probability `rc_prob` the caption is
replaced by a random text of the RC pool and the sample is marked unpaired (the latent does
not show that text, so only the teacher can say what the student should predict). Texts are
dropped to "" with probability `drop_text` (keeps classifier-free guidance working).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..teacher.text_encoder import hidden_states


def timestep_weights(kind: str, num_train_timesteps: int, lam: float) -> torch.Tensor:
    """Unnormalised p(t) over t = 0..T-1: uniform, or exp: p(t) ∝ exp(-λ (1 - t/T)) (more noise)."""
    t = torch.arange(num_train_timesteps, dtype=torch.float64)
    if kind == "uniform":
        return torch.ones_like(t)
    return torch.exp(-lam * (1 - t / num_train_timesteps))


@dataclass
class RCBatch:
    latents: torch.Tensor
    noise: torch.Tensor
    timesteps: torch.Tensor
    texts: list[str]
    paired: torch.Tensor  # bool (B,): the latent really shows the text
    uniform: torch.Tensor  # (B,) U[0, 1) draws for an objective's own randomness (consistency: guidance w)
    index: torch.Tensor | None = None  # (B,) which cached latent each sample is (CoDi reads its condition)
    teacher_texts: list[str] | None = None  # what a frozen teacher reads instead of `texts` (codi/texts.py)


class RCSampler:
    """Draws RC batches. Batch k comes from a generator seeded by (seed, k) alone, so a resumed run
    (any process of a data-parallel one) replays its batches from the step number: no sampler
    state has to survive in a checkpoint."""

    def __init__(self, latents: torch.Tensor, captions: list[str], rc_pool: list[str], rc_prob: float,
                 drop_text: float, t_weights: torch.Tensor, seed: int, unpaired_t_min: int = 0,
                 partners: list[torch.Tensor] | None = None):
        """`unpaired_t_min`: unpaired samples draw t >= it (same weights above it). `partners[j]`: the
        cached latents pool text j may be paired with (default: any)."""
        if not rc_pool and rc_prob > 0:
            raise ValueError("rc_prob > 0 needs a non-empty Random Conditioning text pool")
        if not 0 <= unpaired_t_min < len(t_weights):
            raise ValueError(f"distill.unpaired.t_min: {unpaired_t_min} is outside the schedule's 0..{len(t_weights) - 1}")
        self.latents, self.captions, self.rc_pool = latents, captions, rc_pool
        self.rc_prob, self.drop_text = rc_prob, drop_text
        self.t_weights = t_weights
        self.unpaired_t_weights = torch.cat([torch.zeros(unpaired_t_min, dtype=t_weights.dtype),
                                             t_weights[unpaired_t_min:]]) if unpaired_t_min else None
        self.partners = partners
        self.seed, self.draws = seed, 0

    def sample(self, batch_size: int, step: int | None = None) -> RCBatch:
        """Batch number `step` (default: the next one)."""
        if step is None:
            step, self.draws = self.draws, self.draws + 1
        g = torch.Generator().manual_seed(int(np.random.SeedSequence([self.seed, step]).generate_state(1)[0]))
        idx = torch.randint(len(self.latents), (batch_size,), generator=g)
        swap = torch.rand(batch_size, generator=g) < self.rc_prob
        rc_idx = torch.randint(max(1, len(self.rc_pool)), (batch_size,), generator=g)
        drop = torch.rand(batch_size, generator=g) < self.drop_text
        texts = []
        for i in range(batch_size):
            text = self.rc_pool[rc_idx[i]] if swap[i] else self.captions[idx[i]]
            texts.append("" if drop[i] else text)
        timesteps = torch.multinomial(self.t_weights, batch_size, replacement=True, generator=g)
        noise = torch.randn((batch_size, *self.latents.shape[1:]), generator=g)
        uniform = torch.rand(batch_size, generator=g)
        # the variants draw after everything above, so the default recipe's batches stay as they were
        if self.unpaired_t_weights is not None and swap.any():
            timesteps[swap] = torch.multinomial(self.unpaired_t_weights, int(swap.sum()), replacement=True, generator=g)
        if self.partners is not None:
            for i in swap.nonzero().flatten().tolist():
                choices = self.partners[rc_idx[i]]
                idx[i] = choices[torch.randint(len(choices), (1,), generator=g)]
        return RCBatch(self.latents[idx], noise, timesteps, texts, ~swap, uniform, idx)

    def state_dict(self) -> dict:
        return {"draws": self.draws}

    def load_state_dict(self, state: dict) -> None:
        self.draws = state["draws"]


class TextBank:
    """Text -> frozen encoder states. `memory`: every pool text encoded once; `off`: encoded per call."""

    def __init__(self, text_encoder, tokenizer, texts: list[str], mode: str, device, dtype=torch.float32,
                 batch_size: int = 512):
        self.text_encoder, self.tokenizer, self.mode = text_encoder, tokenizer, mode
        self.device, self.dtype = device, dtype
        if mode == "memory":
            unique = sorted(set(texts) | {""})
            self.row = {t: i for i, t in enumerate(unique)}
            parts = [self._encode(unique[s: s + batch_size]) for s in range(0, len(unique), batch_size)]
            self.table = torch.cat(parts)

    @torch.no_grad()
    def _encode(self, texts: list[str]) -> torch.Tensor:
        return hidden_states(self.text_encoder, self.tokenizer, texts, self.device, self.dtype)

    def __call__(self, texts: list[str]) -> torch.Tensor:
        if self.mode == "memory":
            return self.table[torch.tensor([self.row[t] for t in texts], device=self.table.device)]
        return self._encode(texts)


def matched_partners(pool_rows: list[dict], cache_rows: list[dict], attributes: tuple[str, ...]) -> list[torch.Tensor]:
    """For each pool text, the cached latents that share the most of its `attributes` (a text naming a
    held-out shape meets latents that differ from it in little more than the shape)."""
    ids: dict[str, int] = {}  # each attribute value's integer code, so the tensors compare values exactly

    def codes(rows):
        return torch.tensor([[ids.setdefault(f"{a}={r[a]}", len(ids)) for a in attributes] for r in rows])
    matches = (codes(pool_rows)[:, None, :] == codes(cache_rows)[None, :, :]).sum(-1)  # (pool, cache)
    best = matches.max(1, keepdim=True).values
    return [torch.nonzero(row).flatten() for row in matches == best]
