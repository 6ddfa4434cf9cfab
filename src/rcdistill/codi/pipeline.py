"""CoDiPipeline: a diffusers pipeline that draws an image from a text and a condition image.

Components: the teacher's VAE, text encoder and tokenizer, the (student) UNet, the CoDi adapter
and a scheduler (LCMScheduler for a distilled few-step model, DDIM for the diffusion-loss
reference); `text_view` in its config says what it reads of a prompt. Saved and loaded with
diffusers' own save_pretrained / from_pretrained.
"""
from __future__ import annotations

import torch
from diffusers import DiffusionPipeline, ImagePipelineOutput

from ..sampling import seed_generators, seeded_noise
from ..teacher.text_encoder import hidden_states
from . import adapter as _adapter  # noqa: F401  (diffusers loads a folder's adapter only from an imported module)
from .conditions import model_input
from .texts import view_text


class CoDiPipeline(DiffusionPipeline):
    model_cpu_offload_seq = "text_encoder->adapter->unet->vae"

    def __init__(self, vae, text_encoder, tokenizer, unet, adapter, scheduler, text_view: str = "caption"):
        super().__init__()
        self.register_modules(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, adapter=adapter,
                              scheduler=scheduler)
        self.register_to_config(text_view=text_view)  # what the model reads of a prompt (codi/texts.py)
        self.vae_scale_factor = 2 ** (len(vae.config.block_out_channels) - 1)

    @property
    def image_size(self) -> int:
        return self.unet.config.sample_size * self.vae_scale_factor

    def _encode(self, texts: list[str]) -> torch.Tensor:
        return hidden_states(self.text_encoder, self.tokenizer, texts, self.device, self.unet.dtype)

    @torch.no_grad()
    def __call__(self, prompt: list[str], condition: torch.Tensor, num_inference_steps: int = 4,
                 guidance_scale: float = 1.0, generator: list[torch.Generator] | None = None,
                 latents: torch.Tensor | None = None, output_type: str = "pt") -> ImagePipelineOutput:
        """`condition`: the stored conditions (uint8, N x C x h x w, as conditions.derive writes them)
        or the adapter's input already (float in [-1, 1] at the image size). A `colour` model reads
        only the colour word of each prompt (ValueError if one names none)."""
        prompt = [view_text(p, self.config.text_view) for p in prompt]
        n = len(prompt)
        size = self.image_size
        cond_img = model_input(condition, size) if condition.dtype == torch.uint8 else condition
        cond_img = cond_img.to(self.device, self.unet.dtype)
        states = self._encode(list(prompt))
        guided = guidance_scale > 1.0
        if guided:
            states = torch.cat([states, self._encode([""] * n)])
            cond_img = torch.cat([cond_img, cond_img])
        if latents is None:
            shape = (n, self.unet.config.in_channels, size // self.vae_scale_factor, size // self.vae_scale_factor)
            latents = seeded_noise(generator, shape[1:]) if generator else torch.randn(shape)
        x = latents.to(self.device, self.unet.dtype) * self.scheduler.init_noise_sigma
        self.scheduler.set_timesteps(num_inference_steps, device=self.device)
        for t in self.progress_bar(self.scheduler.timesteps):
            xin = torch.cat([x, x]) if guided else x
            xin = self.scheduler.scale_model_input(xin, t)
            down, mid = self.adapter(xin, t, states, cond_img)
            out = self.unet(xin, t, states, down_block_additional_residuals=down,
                            mid_block_additional_residual=mid).sample
            if guided:
                c, u = out.chunk(2)
                out = u + guidance_scale * (c - u)
            x = self.scheduler.step(out, t, x, generator=generator).prev_sample
        if output_type == "latent":
            return ImagePipelineOutput(images=x)
        image = self.vae.decode(x / self.vae.config.scaling_factor).sample
        image = (image.float() / 2 + 0.5).clamp(0, 1)
        self.maybe_free_model_hooks()
        return ImagePipelineOutput(images=image)


@torch.no_grad()
def generate_conditioned(pipe: CoDiPipeline, prompts: list[str], seeds: list[int], conditions: torch.Tensor,
                         steps: int, guidance_scale: float = 1.0, batch_size: int = 128) -> torch.Tensor:
    """uint8 (N,3,H,W); image i is a function of (prompt i, seed i, condition i) alone."""
    out = []
    for s in range(0, len(prompts), batch_size):
        gens = seed_generators(seeds[s: s + batch_size])
        img = pipe(prompts[s: s + batch_size], conditions[s: s + batch_size], steps, guidance_scale, gens).images
        out.append((img * 255).round().to(torch.uint8).cpu())
    return torch.cat(out)
