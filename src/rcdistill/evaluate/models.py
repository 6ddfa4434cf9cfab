"""Which pipelines `evaluate` samples, with which scheduler, guidance and step counts."""
from __future__ import annotations

from dataclasses import dataclass

from ..config import Params
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


def eval_models(params: Params) -> list[EvalModel]:
    """teacher and student always (the sampling settings); student_fast unless evaluate.steps leaves it out."""
    s, lists = params.sampling, params.evaluate.steps
    models = [EvalModel("teacher", params.teacher.path, s.scheduler, s.steps, s.guidance_scale, []),
              EvalModel("student", params.distill.out_dir, s.scheduler, s.steps, s.guidance_scale, [])]
    if lists.get("student_fast"):
        c = params.consistency
        own = folder_defaults(c.out_dir)
        models.append(EvalModel("student_fast", c.out_dir, None, own.get("steps", c.default_steps),
                                own.get("guidance_scale", c.guidance_scale), []))
    for m in models:
        m.steps = sorted(set(lists.get(m.name, [])) | {m.default_steps}, reverse=True)
    return models
