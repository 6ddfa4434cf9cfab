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


class NoiseScales:
    """A noise schedule's scales, x_t = alpha_t x0 + sigma_t noise with alpha_t = sqrt(alpha_bar_t) and
    sigma_t = sqrt(1 - alpha_bar_t), looked up per sample (shaped B x 1 x 1 x 1) for the objectives."""

    def __init__(self, scheduler, device: torch.device):
        bar = scheduler.alphas_cumprod.to(device)
        self.alphas, self.sigmas = bar.sqrt(), (1 - bar).sqrt()

    def at(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.alphas[t].view(-1, 1, 1, 1), self.sigmas[t].view(-1, 1, 1, 1)

    def noised(self, t: torch.Tensor, x0: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        a, s = self.at(t)
        return a * x0 + s * noise
