"""teacher.source: sd_random — a Stable Diffusion v1.x-shaped pipeline with random weights, built
offline: SD's UNet config (859.5M), a CLIP ViT-L/14-shaped text encoder with CLIP's real BPE
vocabulary (123M), SD's VAE layout (83.7M, scaling 0.18215) and SD's noise schedule.

It draws noise, but every tensor, dtype, file and memory footprint is the real model's, so the
whole pipeline can be run at real model size without a download (profiles/sd-random). The
latent size is a parameter, so a CPU test can run full channel widths on small latents; so is the
UNet's width (SD's 320, kept by default), for a check of plumbing alone (benchmarks/gpu_check.sh
SMOKE=1), where the width does not matter and 3 GB pipeline folders cost minutes each on a CPU.
"""
from __future__ import annotations

from pathlib import Path

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel

from ..students import SD_V1_UNET_CONFIG
from .pipeline import assemble, save
from .tokenizer import build_tokenizer

SD_V1_TEXT_CONFIG = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                         max_position_embeddings=77, hidden_act="quick_gelu", projection_dim=768)
SD_V1_VAE_CONFIG = dict(in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2,
                        block_out_channels=[128, 256, 512, 512], down_block_types=["DownEncoderBlock2D"] * 4,
                        up_block_types=["UpDecoderBlock2D"] * 4, norm_num_groups=32, scaling_factor=0.18215)
VAE_DOWNSCALE = 8


def build_sd_random(folder: Path, latent_size: int, seed: int, unet_width: int = 320) -> dict:
    """Write the pipeline folder; returns the parameter counts. `unet_width`: the first block's
    channels, SD's layout scaled (320, 640, 1280, 1280 at SD's 320)."""
    widths = [unet_width * k for k in (1, 2, 4, 4)]
    torch.manual_seed(seed)
    tokenizer = build_tokenizer(77)
    text_encoder = CLIPTextModel(CLIPTextConfig(vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id,
                                                eos_token_id=tokenizer.eos_token_id,
                                                pad_token_id=tokenizer.pad_token_id, **SD_V1_TEXT_CONFIG))
    vae = AutoencoderKL(sample_size=latent_size * VAE_DOWNSCALE, **SD_V1_VAE_CONFIG)
    unet = UNet2DConditionModel(**{**SD_V1_UNET_CONFIG, "sample_size": latent_size, "block_out_channels": widths})
    save(assemble(vae, text_encoder, tokenizer, unet), folder)
    return {name: sum(p.numel() for p in m.parameters())
            for name, m in (("unet", unet), ("text_encoder", text_encoder), ("vae", vae))}
