"""Distillation losses: task (paired samples only), output KD and feature KD."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def distill_losses(student_out: torch.Tensor, teacher_out: torch.Tensor, target: torch.Tensor,
                   paired: torch.Tensor, student_feats: list[torch.Tensor], teacher_feats: list[torch.Tensor],
                   weights) -> dict[str, torch.Tensor]:
    s = student_out.float()
    per_sample = F.mse_loss(s, target.float(), reduction="none").flatten(1).mean(1)
    mask = paired.to(per_sample.dtype)
    # unpaired samples: the latent does not show the text, so there is no true target
    task = (per_sample * mask).sum() / mask.sum().clamp(min=1)
    out = F.mse_loss(s, teacher_out.float())
    feat = sum((F.mse_loss(a.float(), b.float()) for a, b in zip(student_feats, teacher_feats)),
               torch.zeros((), device=s.device))
    total = weights.task * task + weights.out * out + weights.feat * feat
    return {"total": total, "task": task, "out": out, "feat": feat}
