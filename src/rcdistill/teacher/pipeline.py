"""Assemble the trained parts into a real StableDiffusionPipeline folder."""
from __future__ import annotations

from pathlib import Path

from diffusers import DDIMScheduler, StableDiffusionPipeline

from .unet import SCHEDULE


def assemble(vae, text_encoder, tokenizer, unet, prediction_type: str = "epsilon") -> StableDiffusionPipeline:
    scheduler = DDIMScheduler(**SCHEDULE, clip_sample=False, set_alpha_to_one=False, steps_offset=1,
                              prediction_type=prediction_type)
    return StableDiffusionPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler,
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )


def save(pipe: StableDiffusionPipeline, folder: Path) -> None:
    pipe.save_pretrained(folder, safe_serialization=True)
