"""MLflow pyfunc wrapper of a student pipeline folder, logged as "models from code" (no pickle).

predict(["a red circle", ...], params={"seed": 0, "steps": 25, "guidance_scale": 3.0})
returns uint8 images, shape (N, H, W, 3). Image i uses seed + i, so a call is reproducible.
Steps, guidance and scheduler default to the registered model's own (model_config): DDIM for
the RC student, the folder's LCMScheduler at 4 steps for the few-step student.
Self-contained on purpose: MLflow copies this file into the model, and the model needs only
torch and diffusers to load.
"""
from __future__ import annotations

import mlflow
import numpy as np
import torch
from mlflow.pyfunc import PythonModel

try:  # shipped beside this file (code_paths): lets diffusers import torchvision beside a CPU torch
    from _torchvision_compat import ensure_torchvision_importable
except ImportError:  # loaded some other way: the environment must import cleanly by itself
    def ensure_torchvision_importable() -> None:
        pass

DEFAULTS = {"seed": 0, "steps": 25, "guidance_scale": 7.5}


def _prompts(model_input) -> list[str]:
    if hasattr(model_input, "columns"):  # pandas DataFrame: a `prompt` column, else the first one
        col = "prompt" if "prompt" in model_input.columns else model_input.columns[0]
        return [str(x) for x in model_input[col].tolist()]
    if isinstance(model_input, dict):
        model_input = model_input.get("prompt", next(iter(model_input.values())))
    if isinstance(model_input, str):
        return [model_input]
    return [str(x) for x in np.asarray(model_input).reshape(-1).tolist()]


class StudentPipelineModel(PythonModel):
    def load_context(self, context):
        ensure_torchvision_importable()
        from diffusers import DDIMScheduler, StableDiffusionPipeline

        self.pipe = StableDiffusionPipeline.from_pretrained(
            context.artifacts["pipeline"], safety_checker=None, requires_safety_checker=False, local_files_only=True)
        config = dict(context.model_config or {})
        if config.pop("scheduler", "ddim") == "ddim":  # None: keep the folder's own (a few-step student's LCM)
            self.pipe.scheduler = DDIMScheduler.from_config(self.pipe.scheduler.config)
        self.pipe.set_progress_bar_config(disable=True)
        self.defaults = {**DEFAULTS, **config}

    def predict(self, context, model_input, params=None):
        p = {**self.defaults, **{k: v for k, v in (params or {}).items() if v is not None}}
        prompts = _prompts(model_input)
        size = self.pipe.unet.config.sample_size * self.pipe.vae_scale_factor
        shape = (self.pipe.unet.config.in_channels, self.pipe.unet.config.sample_size, self.pipe.unet.config.sample_size)
        gens = [torch.Generator().manual_seed(int(p["seed"]) + i) for i in range(len(prompts))]
        noise = torch.stack([torch.randn(shape, generator=g) for g in gens])
        with torch.no_grad():  # the generators also feed noise injected between steps (LCM)
            out = self.pipe(prompt=prompts, latents=noise.to(self.pipe.device, self.pipe.unet.dtype), height=size,
                            width=size, num_inference_steps=int(p["steps"]), guidance_scale=float(p["guidance_scale"]),
                            output_type="np", generator=gens).images
        return (np.clip(out, 0, 1) * 255).round().astype(np.uint8)


mlflow.models.set_model(StudentPipelineModel())
