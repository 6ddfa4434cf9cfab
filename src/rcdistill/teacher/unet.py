"""Step 3 of the toy teacher: a UNet2DConditionModel trained on VAE latents of the world.

Stable Diffusion's recipe at toy scale: epsilon (or v) prediction on a DDPM schedule, frozen text
encoder, 10% empty prompts for classifier-free guidance, EMA weights, optional Min-SNR weighting.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler, UNet2DConditionModel
from diffusers.training_utils import EMAModel, compute_snr
from tqdm.auto import tqdm

from ..targets import prediction_target
from ..training import optimizer_step, report

SCHEDULE = dict(num_train_timesteps=1000, beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)


def build_unet(cfg, latent_size: int, latent_channels: int, cross_attention_dim: int) -> UNet2DConditionModel:
    """SD-shaped: cross-attention stages then a plain innermost stage, a cross-attention mid block."""
    n = len(cfg.block_out_channels)
    return UNet2DConditionModel(
        sample_size=latent_size,
        in_channels=latent_channels,
        out_channels=latent_channels,
        down_block_types=("CrossAttnDownBlock2D",) * (n - 1) + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * (n - 1),
        block_out_channels=tuple(cfg.block_out_channels),
        layers_per_block=cfg.layers_per_block,
        cross_attention_dim=cross_attention_dim,
        attention_head_dim=cfg.attention_head_dim,
        norm_num_groups=min(32, cfg.block_out_channels[0]),
        # pooled text also steers every resnet through the time embedding: global
        # attributes (colour, size) are then cheap to learn at toy scale
        addition_embed_type="text",
        addition_embed_type_num_heads=max(1, cross_attention_dim // 8),
    )


def train_unet(cfg, latents: torch.Tensor, text_index: torch.Tensor, text_embeds: torch.Tensor,
               empty_embed: torch.Tensor, seed: int, log=None) -> UNet2DConditionModel:
    """latents (N,C,h,w); text_index (N,) rows into text_embeds (T,L,D); empty_embed (L,D) for CFG drop."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    unet = build_unet(cfg, latents.shape[-1], latents.shape[1], text_embeds.shape[-1]).train()
    noise_sched = DDPMScheduler(**SCHEDULE, prediction_type=cfg.prediction_type)
    ema = EMAModel(unet.parameters(), decay=cfg.ema_decay, use_ema_warmup=True, power=2 / 3)
    opt = torch.optim.AdamW(unet.parameters(), lr=cfg.lr, weight_decay=1e-2)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.steps, pct_start=0.05)
    for step in (bar := tqdm(range(cfg.steps), desc="teacher unet")):
        idx = torch.randint(len(latents), (cfg.batch_size,), generator=gen)
        z0 = latents[idx]
        cond = text_embeds[text_index[idx]]
        drop = torch.rand(len(idx), generator=gen) < cfg.drop_text
        cond = torch.where(drop.view(-1, 1, 1), empty_embed.unsqueeze(0), cond)
        noise = torch.randn(z0.shape, generator=gen)
        t = torch.randint(0, noise_sched.config.num_train_timesteps, (len(idx),), generator=gen)
        pred = unet(noise_sched.add_noise(z0, noise, t), t, cond).sample
        target = prediction_target(noise_sched, z0, noise, t)
        loss = (F.mse_loss(pred, target, reduction="none").mean(dim=(1, 2, 3)) * _loss_weight(cfg, noise_sched, t)).mean()
        optimizer_step(loss, opt, sched, unet.parameters(), max_norm=1.0)
        ema.step(unet.parameters())
        report(step, bar, log, {"unet/loss": loss.item(), "unet/lr": sched.get_last_lr()[0]})
    ema.copy_to(unet.parameters())
    return unet.eval()


def _loss_weight(cfg, noise_sched, t: torch.Tensor) -> torch.Tensor:
    """Min-SNR-gamma (Hang et al. 2023) when snr_gamma > 0, else 1: a step weighs min(SNR, gamma) / SNR
    for epsilon prediction and min(SNR, gamma) / (SNR + 1) for v-prediction. (The colour drift across
    sampling steps came from epsilon prediction, not from this weighting: docs/results.md.)"""
    if not cfg.snr_gamma:
        return torch.ones(len(t))
    snr = compute_snr(noise_sched, t)
    denom = snr if cfg.prediction_type == "epsilon" else snr + 1
    return torch.clamp(snr, max=cfg.snr_gamma) / denom


@torch.no_grad()
def cond_uncond_gap(unet: UNet2DConditionModel, latents: torch.Tensor, cond: torch.Tensor,
                    empty: torch.Tensor, timestep: int = 800, seed: int = 0) -> float:
    """||eps(x_t, text) - eps(x_t, "")|| / ||eps(x_t, text)|| at a high-noise step: 0 means text is ignored."""
    noise = torch.randn(latents.shape, generator=torch.Generator().manual_seed(seed))
    t = torch.full((len(latents),), timestep)
    noisy = DDPMScheduler(**SCHEDULE).add_noise(latents, noise, t)
    a = unet(noisy, t, cond).sample
    b = unet(noisy, t, empty.expand_as(cond)).sample
    return ((a - b).norm() / a.norm()).item()
