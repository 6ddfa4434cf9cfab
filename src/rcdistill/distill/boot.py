"""BOOT: data-free distillation by bootstrapping (Gu et al. 2023), with Random Conditioning texts.

No cached latent and no image: a student g(eps, t, c) reads the same pure noise eps at every t and
predicts the teacher's DDIM trajectory in signal space, y_t = (x_t - sigma_t eps) / alpha_t, so
y_0 is the sample itself. Each sample of a batch is a text c (the RC pool: held-out concepts too),
a noise eps and a grid step n:
- bootstrapping (n = 1..N): the student's own sg[y_t] at t = t_n is re-noised with eps,
  x_t = alpha_t y_t + sigma_t eps; the frozen teacher's guided x0 there, f, gives the DDIM step's
  signal at s = t_{n-1}: y_s* = y_t + delta (f - y_t), delta = 1 - alpha_t sigma_s / (sigma_t alpha_s);
  loss |g(eps, s, c) - sg[y_s*]|^2 / delta^2 (delta kept away from 0);
- boundary (with probability boundary_prob): at t_N the target is the teacher's guided x0 from
  pure noise x = eps.
The student's output is its signal y_t directly (prediction_type "sample"), so the saved folder is a
plain StableDiffusionPipeline whose DDIMScheduler reads y_0 = g(eps, 0, c) in one step.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from diffusers import DDIMScheduler, DDPMScheduler, UNet2DConditionModel

from ..precision import frozen_dtype
from ..targets import NoiseScales, cond_and_uncond
from .data import TextBank
from .loop import make_accelerator, train


@dataclass
class NoiseBatch:
    """A BOOT batch: texts and noise only. `timesteps`: grid index n of each sample (1..N)."""
    noise: torch.Tensor
    timesteps: torch.Tensor
    texts: list[str]
    boundary: torch.Tensor  # bool (B,): the sample learns the boundary at t_N instead of a bootstrap step


class TextNoiseSampler:
    """Batch k is a function of (seed, k) alone, as the RC sampler's, so a resumed run replays it."""

    def __init__(self, texts: list[str], shape: tuple[int, ...], grid_size: int, boundary_prob: float, seed: int):
        if not texts:
            raise ValueError("BOOT needs a non-empty text pool")
        self.texts, self.shape, self.grid_size = texts, shape, grid_size
        self.boundary_prob, self.seed = boundary_prob, seed

    def sample(self, batch_size: int, step: int) -> NoiseBatch:
        g = torch.Generator().manual_seed(int(np.random.SeedSequence([self.seed, step]).generate_state(1)[0]))
        idx = torch.randint(len(self.texts), (batch_size,), generator=g)
        n = torch.randint(1, self.grid_size, (batch_size,), generator=g)
        boundary = torch.rand(batch_size, generator=g) < self.boundary_prob
        noise = torch.randn((batch_size, *self.shape), generator=g)
        return NoiseBatch(noise, n, [self.texts[i] for i in idx], boundary)


def signal_scheduler(scheduler_config) -> DDIMScheduler:
    """The one-step sampler of a BOOT student: the UNet's output is the signal y_0 itself ("sample"),
    read at t = 0 (one DDIM step to alpha = 1 returns it unchanged)."""
    return DDIMScheduler.from_config(scheduler_config, prediction_type="sample", timestep_spacing="leading",
                                     steps_offset=0, set_alpha_to_one=True, clip_sample=False, thresholding=False)


def signal_unet(unet: UNet2DConditionModel, prediction_type: str) -> UNet2DConditionModel:
    """A trainable copy of `unet` that outputs the signal y_t. A v-prediction at pure noise is about
    -x0 (alpha_T ~ 0), so negating the output layer starts the copy near its boundary target; an
    epsilon-prediction has no such reading and starts as it is."""
    copy = UNet2DConditionModel.from_config(unet.config)
    copy.load_state_dict(unet.state_dict())
    if prediction_type == "v_prediction":
        with torch.no_grad():
            copy.conv_out.weight.neg_()
            copy.conv_out.bias.neg_()
    return copy.train()


class BootObjective:
    name = "boot"
    ema_warmup = True
    # UNet rows per training sample: the student's y_t (no grad), the teacher with and without the text
    # (one batched call), the student's y_s (forward and backward)
    unet_rows_per_sample = 4

    def __init__(self, cfg, teacher: UNet2DConditionModel, init: UNet2DConditionModel, scheduler_config,
                 uncond: torch.Tensor, device: torch.device):
        self.cfg, self.device = cfg, device
        self.teacher = teacher.eval().requires_grad_(False).to(device, frozen_dtype(cfg.teacher_dtype, device))
        noise = DDPMScheduler.from_config(scheduler_config)
        self.kind = noise.config.prediction_type
        self.student = signal_unet(init, self.kind)
        num_t = noise.config.num_train_timesteps
        self.grid = torch.linspace(0, num_t - 1, cfg.num_grid_steps + 1, device=device).round().long()
        self.scales = NoiseScales(noise, device)
        self.uncond = uncond.to(device)

    @torch.no_grad()
    def teacher_x0(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """The teacher's guided clean-latent estimate at (x, t): uncond + w (cond - uncond)."""
        (x0_c, _), (x0_u, _) = cond_and_uncond(self.teacher, self.kind, x, t, cond, self.uncond,
                                               *self.scales.at(t))
        return x0_u + self.cfg.guidance_scale * (x0_c - x0_u)

    @torch.no_grad()
    def targets(self, batch: NoiseBatch, cond: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per sample: the step s the student is taught at, its target signal there and the weight."""
        eps, n = batch.noise.to(self.device), batch.timesteps.to(self.device)
        edge = batch.boundary.to(self.device)
        top = self.grid[-1].expand_as(n)
        t = torch.where(edge, top, self.grid[n])        # where the teacher looks
        s = torch.where(edge, top, self.grid[n - 1])    # where the student is taught
        y_t = self.student(eps, t, cond).sample.float()
        edge4 = edge.view(-1, 1, 1, 1)
        (a_t, sig_t), (a_s, sig_s) = self.scales.at(t), self.scales.at(s)
        x_t = torch.where(edge4, eps, a_t * y_t + sig_t * eps)  # the boundary starts from pure noise
        f = self.teacher_x0(x_t, t, cond)
        delta = torch.where(edge4, torch.ones_like(a_t), 1 - a_t * sig_s / (sig_t * a_s))
        return s, y_t + delta * (f - y_t), 1 / delta.clamp(min=self.cfg.delta_min) ** 2

    def loss(self, batch: NoiseBatch, cond: torch.Tensor, autocast) -> dict[str, torch.Tensor]:
        s, target, weight = self.targets(batch, cond)
        with autocast():
            y_s = self.student(batch.noise.to(self.device), s, cond).sample
        per_sample = ((y_s.float() - target) ** 2).mean(dim=(1, 2, 3))
        parts = {"total": (weight.flatten() * per_sample).mean()}
        edge = batch.boundary.to(self.device)
        for name, mask in (("boot", ~edge), ("boundary", edge)):  # unweighted, for the loss curve
            parts[name] = per_sample[mask].mean().detach() if mask.any() else torch.zeros((), device=self.device)
        return parts

    def sync_target(self, ema) -> None:
        pass


def boot_distill(cfg, pipe, init_unet: UNet2DConditionModel, texts: list[str], log=None,
                 stop_after: int | None = None) -> tuple[UNet2DConditionModel, BootObjective]:
    """One-step student of the frozen `pipe.unet` from `texts` and noise; returns its (EMA) weights."""
    accelerator = make_accelerator(cfg)
    device = accelerator.device
    text_encoder = pipe.text_encoder.eval().requires_grad_(False).to(device)
    bank = TextBank(text_encoder, pipe.tokenizer, texts, cfg.text_embeds, device)
    objective = BootObjective(cfg, pipe.unet, init_unet, pipe.scheduler.config, bank([""]), device)
    u = pipe.unet.config
    sampler = TextNoiseSampler(texts, (u.in_channels, u.sample_size, u.sample_size), len(objective.grid),
                               cfg.boundary_prob, cfg.seed + accelerator.process_index)
    return train(accelerator, cfg, objective, sampler, bank, log, stop_after), objective
