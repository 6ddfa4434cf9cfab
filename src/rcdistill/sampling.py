"""Load any StableDiffusionPipeline folder (or hub id) offline and sample it in seeded batches."""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from diffusers import (
    DDIMScheduler,
    DPMSolverMultistepScheduler,
    EulerDiscreteScheduler,
    LCMScheduler,
    PNDMScheduler,
    StableDiffusionPipeline,
)
from tqdm.auto import tqdm

from .errors import UserError

SCHEDULERS = {
    "ddim": DDIMScheduler,
    "dpm": DPMSolverMultistepScheduler,
    "euler": EulerDiscreteScheduler,
    "pndm": PNDMScheduler,
    "lcm": LCMScheduler,
}
# A pipeline folder's own sampling defaults (steps, guidance_scale), e.g. a few-step student's.
DEFAULTS_FILE = "rcdistill_sampling.json"


def device() -> torch.device:
    """The GPU of this process (LOCAL_RANK under accelerate launch / torchrun), else the CPU."""
    if not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))


def load_pipeline(path: str, scheduler: str | None = "ddim", dtype: torch.dtype | None = None) -> StableDiffusionPipeline:
    """scheduler=None keeps the one saved in the folder (e.g. a consistency student's LCMScheduler)."""
    pipe = StableDiffusionPipeline.from_pretrained(
        path, safety_checker=None, requires_safety_checker=False, torch_dtype=dtype, local_files_only=True
    )
    if scheduler is not None:
        pipe.scheduler = SCHEDULERS[scheduler].from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device())


def require_pipeline_folder(path: str | Path) -> Path:
    """A diffusers pipeline folder (model_index.json), or one line saying which stage writes it."""
    if not (Path(path) / "model_index.json").exists():
        raise UserError(f"{path}: not a pipeline folder; run the stage that writes it")
    return Path(path)


def folder_defaults(path: str | Path) -> dict:
    """{steps, guidance_scale} a pipeline folder asks to be sampled with, or {} when it says nothing."""
    f = Path(path) / DEFAULTS_FILE
    return json.loads(f.read_text()) if f.exists() else {}


def image_size(pipe: StableDiffusionPipeline) -> int:
    return pipe.unet.config.sample_size * pipe.vae_scale_factor


def seed_generators(seeds: list[int]) -> list[torch.Generator]:
    return [torch.Generator("cpu").manual_seed(int(x)) for x in seeds]


def seeded_noise(generators: list[torch.Generator], shape: tuple[int, ...]) -> torch.Tensor:
    """One noise tensor per generator, drawn on the CPU: identical on every device."""
    return torch.stack([torch.randn(shape, generator=g) for g in generators])


@torch.no_grad()
def generate(pipe: StableDiffusionPipeline, prompts: list[str], seeds: list[int], steps: int, guidance_scale: float,
             batch_size: int = 64, output_type: str = "pt", desc: str = "sampling") -> torch.Tensor:
    """Images as uint8 (N,3,H,W), or latents when output_type='latent'. Seed i fixes sample i."""
    size = image_size(pipe)
    out = []
    for s in tqdm(range(0, len(prompts), batch_size), desc=desc, unit="batch"):
        gens = seed_generators(seeds[s: s + batch_size])
        shape = (pipe.unet.config.in_channels, size // pipe.vae_scale_factor, size // pipe.vae_scale_factor)
        noise = seeded_noise(gens, shape).to(pipe.device, pipe.unet.dtype)
        # the same generators go on to feed any noise a sampler injects between steps (LCM does;
        # DDIM with eta 0 does not), so every sample stays a function of its own seed
        res = pipe(prompt=prompts[s: s + batch_size], latents=noise, height=size, width=size,
                   num_inference_steps=steps, guidance_scale=guidance_scale, output_type=output_type,
                   generator=gens)
        imgs = res.images
        if output_type == "pt":
            imgs = (imgs.clamp(0, 1) * 255).round().to(torch.uint8)
        out.append(imgs.cpu())
    return torch.cat(out)
