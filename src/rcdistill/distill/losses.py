"""Distillation losses: task (paired samples only), output KD and feature KD."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def distill_losses(student_out: torch.Tensor, teacher_out: torch.Tensor, target: torch.Tensor,
                   paired: torch.Tensor, student_feats: list[torch.Tensor], teacher_feats: list[torch.Tensor],
                   weights, unpaired_weight: float = 1.0) -> dict[str, torch.Tensor]:
    """`unpaired_weight`: an unpaired sample's weight in the output and feature losses (paired: 1)."""
    s = student_out.float()
    per_sample = F.mse_loss(s, target.float(), reduction="none").flatten(1).mean(1)
    mask = paired.to(per_sample.dtype)
    # unpaired samples: the latent does not show the text, so there is no true target
    task = (per_sample * mask).sum() / mask.sum().clamp(min=1)
    if unpaired_weight == 1.0:  # the plain mean: the default recipe's numbers exactly as before
        out = F.mse_loss(s, teacher_out.float())
        feat = sum((F.mse_loss(a.float(), b.float()) for a, b in zip(student_feats, teacher_feats)),
                   torch.zeros((), device=s.device))
    else:
        w = mask + unpaired_weight * (1 - mask)
        out = _weighted_mse(s, teacher_out, w)
        feat = sum((_weighted_mse(a, b, w) for a, b in zip(student_feats, teacher_feats)),
                   torch.zeros((), device=s.device))
    total = weights.task * task + weights.out * out + weights.feat * feat
    return {"total": total, "task": task, "out": out, "feat": feat}


def _weighted_mse(a: torch.Tensor, b: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    per_sample = F.mse_loss(a.float(), b.float(), reduction="none").flatten(1).mean(1)
    return (per_sample * w).sum() / w.sum().clamp(min=1e-12)
