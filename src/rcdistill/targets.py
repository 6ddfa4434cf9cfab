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
