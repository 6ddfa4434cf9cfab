"""Which pipelines `evaluate` samples, with which scheduler, guidance and step counts."""
from __future__ import annotations

from dataclasses import dataclass

from ..config import Params
from ..roster import ROSTER, Model, folder, lookup
from ..sampling import folder_defaults, load_pipeline, require_pipeline_folder


@dataclass
class EvalModel:
    name: str
    path: str
    scheduler: str | None     # None: the folder's own (a few-step student's LCMScheduler)
    default_steps: int        # the model's reference sampling: gate, summary and grids use it
    guidance_scale: float     # student_fast: embedded in the UNet, no CFG pass
    steps: list[int]          # every step count to sample, most first

    def load(self):
        require_pipeline_folder(self.path)
        return load_pipeline(self.path, self.scheduler)


def eval_model(model: Model, params: Params) -> EvalModel:
    """How `model` samples: a few-step model by its folder's own settings (or its training section's
    defaults before it exists), every other one by the `sampling` settings."""
    s = params.sampling
    path = folder(model, params)
    if model.own_sampling:
        own = folder_defaults(path)
        if not {"steps", "guidance_scale"} <= own.keys():  # (the training section is not evaluate's params)
            sec = lookup(params, model.train_section)
            own = {"steps": sec.default_steps, "guidance_scale": sec.guidance_scale, **own}
        return EvalModel(model.name, path, None, own["steps"], own["guidance_scale"], [])
    return EvalModel(model.name, path, s.scheduler, s.steps, s.guidance_scale, [])


def eval_models(params: Params) -> list[EvalModel]:
    """Every roster model, in roster order; an optional one (a few-step student) only when
    evaluate.steps gives it step counts."""
    lists = params.evaluate.steps
    models = [eval_model(m, params) for m in ROSTER if not m.optional or lists.get(m.name)]
    for m in models:
        m.steps = sorted(set(lists.get(m.name, [])) | {m.default_steps}, reverse=True)
    return models
