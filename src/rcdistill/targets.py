"""What a diffusion UNet should predict for the true data, by its scheduler's `prediction_type`
(the teacher's training and the student's task loss share it), and what a prediction implies."""
from __future__ import annotations

import torch


def prediction_target(scheduler, latents: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
    """epsilon: the noise; v_prediction: the velocity; sample: the clean latents."""
    kind = scheduler.config.prediction_type
    if kind == "epsilon":
        return noise
    if kind == "v_prediction":
        return scheduler.get_velocity(latents, noise, timesteps)
    if kind == "sample":
        return latents
    raise ValueError(f"unsupported prediction_type {kind!r}")


def clean_and_noise(kind: str, out: torch.Tensor, x: torch.Tensor, alpha: torch.Tensor, sigma: torch.Tensor):
    """Clean latent and noise implied by a UNet output `out` of `kind` at x = alpha * x0 + sigma * noise."""
    if kind == "epsilon":
        return (x - sigma * out) / alpha, out
    if kind == "v_prediction":
        return alpha * x - sigma * out, alpha * out + sigma * x
    if kind == "sample":
        return out, (x - alpha * out) / sigma
    raise ValueError(f"unsupported prediction_type {kind!r}")


@torch.no_grad()
def cond_and_uncond(teacher, kind: str, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor, uncond: torch.Tensor,
                    alpha: torch.Tensor, sigma: torch.Tensor):
    """The teacher's (x0, noise) with the texts and with the empty text, in one batched call (the two
    halves of a CFG step): ((x0_c, eps_c), (x0_u, eps_u))."""
    b, td = len(x), teacher.dtype
    both = teacher(torch.cat([x, x]).to(td), torch.cat([t, t]), torch.cat([cond, uncond.expand_as(cond)]).to(td)).sample
    both = both.float()
    return clean_and_noise(kind, both[:b], x, alpha, sigma), clean_and_noise(kind, both[b:], x, alpha, sigma)
