"""Step 1 of the toy teacher: a tiny AutoencoderKL for the world's images (32x32 -> 8x8x4 by default)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL
from tqdm.auto import tqdm

from ..images import to_unit
from ..training import optimizer_step, report


def build_vae(cfg, image_size: int) -> AutoencoderKL:
    n = len(cfg.block_out_channels)
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * n,
        up_block_types=("UpDecoderBlock2D",) * n,
        block_out_channels=tuple(cfg.block_out_channels),
        layers_per_block=1,
        latent_channels=cfg.latent_channels,
        norm_num_groups=min(16, cfg.block_out_channels[0]),
        sample_size=image_size,
        mid_block_add_attention=cfg.mid_block_attention,
    )


def train_vae(cfg, images_u8: torch.Tensor, seed: int, log=None) -> AutoencoderKL:
    """Reconstruction (MSE + L1) with a small KL; then scaling_factor is set from latent statistics."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    vae = build_vae(cfg, images_u8.shape[-1]).train()
    opt = torch.optim.AdamW(vae.parameters(), lr=cfg.lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.steps, pct_start=0.1)
    for step in (bar := tqdm(range(cfg.steps), desc="teacher vae")):
        x = to_unit(images_u8[torch.randint(len(images_u8), (cfg.batch_size,), generator=gen)]) * 2 - 1
        post = vae.encode(x).latent_dist
        rec = vae.decode(post.sample(generator=None)).sample
        rec_loss = F.mse_loss(rec, x) + 0.5 * F.l1_loss(rec, x)
        kl = post.kl().mean() / x[0].numel()
        loss = rec_loss + cfg.kl_weight * kl
        optimizer_step(loss, opt, sched, vae.parameters(), max_norm=1.0)
        report(step, bar, log, {"vae/rec_loss": rec_loss.item(), "vae/kl": kl.item()})
    vae.eval()
    latents = encode(vae, images_u8[:2048], scaling_factor=1.0, generator=gen)
    vae.register_to_config(scaling_factor=float(1.0 / latents.std()))
    return vae


@torch.no_grad()
def encode(vae: AutoencoderKL, images_u8: torch.Tensor, scaling_factor: float | None = None,
           generator: torch.Generator | None = None, batch_size: int = 512) -> torch.Tensor:
    """Images -> scaled latents, as a Stable Diffusion training loop sees them."""
    sf = vae.config.scaling_factor if scaling_factor is None else scaling_factor
    out = []
    for s in range(0, len(images_u8), batch_size):
        x = to_unit(images_u8[s: s + batch_size]) * 2 - 1
        out.append(vae.encode(x).latent_dist.sample(generator=generator) * sf)
    return torch.cat(out)


@torch.no_grad()
def decode(vae: AutoencoderKL, latents: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    """Scaled latents -> uint8 images."""
    out = []
    for s in range(0, len(latents), batch_size):
        x = vae.decode(latents[s: s + batch_size] / vae.config.scaling_factor).sample
        out.append(((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8))
    return torch.cat(out)
