"""What a diffusion UNet should predict for the true data, by its scheduler's `prediction_type`
(the teacher's training and the student's task loss share it)."""
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
