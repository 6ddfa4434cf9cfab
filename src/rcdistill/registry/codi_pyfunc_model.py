"""MLflow pyfunc wrapper of a CoDi pipeline folder (an image-conditioned model), logged as "models
from code" (no pickle).

predict(DataFrame{"prompt": [...], "condition_png": [base64 PNG, ...]}, params={"seed": 0, "steps": 4})
returns uint8 images (N, H, W, 3); image i uses seed + i. The condition is the model's task's: an
edge map (white edges on black) or a low-resolution RGB image. The rcdistill package travels with
the model (code_paths): the folder's adapter class lives there.
"""
from __future__ import annotations

import base64
import json
from pathlib import Path

import mlflow
import numpy as np
import torch
from mlflow.pyfunc import PythonModel

from rcdistill.codi.conditions import read_condition
from rcdistill.codi.pipeline import CoDiPipeline, generate_conditioned

DEFAULTS = {"seed": 0, "steps": 4, "guidance_scale": 1.0}


class CoDiPipelineModel(PythonModel):
    def load_context(self, context):
        folder = context.artifacts["pipeline"]
        self.pipe = CoDiPipeline.from_pretrained(folder, local_files_only=True, use_safetensors=True)
        self.pipe.set_progress_bar_config(disable=True)
        own = json.loads((Path(folder) / "rcdistill_sampling.json").read_text())
        self.task = own["task"]
        self.defaults = {**DEFAULTS, **dict(context.model_config or {})}

    def predict(self, context, model_input, params=None):
        p = {**self.defaults, **{k: v for k, v in (params or {}).items() if v is not None}}
        prompts = [str(x) for x in model_input["prompt"].tolist()]
        conditions = torch.stack([read_condition(base64.b64decode(c), self.task)
                                  for c in model_input["condition_png"].tolist()])
        seeds = [int(p["seed"]) + i for i in range(len(prompts))]
        images = generate_conditioned(self.pipe, prompts, seeds, conditions, int(p["steps"]), float(p["guidance_scale"]))
        return images.permute(0, 2, 3, 1).numpy().astype(np.uint8)


mlflow.models.set_model(CoDiPipelineModel())
