"""The model roster: every pipeline the project builds, judges and (for students) registers.

`evaluate` samples each row, `register` registers each row that has a registry name, the
summary, the dvc.yaml plots and the flow's artifact list them; a new model is a row here plus
the stage that builds it. No heavy imports: params validation reads this module.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Model:
    name: str                 # its key in metrics/evaluate.json, evaluate.steps, plots and reports
    stage: str                # the DVC stage that writes its folder
    folder_key: str           # the params key naming its pipeline folder
    summary: str              # one line for model cards, README and the registry description
    train_section: str | None = None   # the params block it was trained with (registry tags, description)
    own_sampling: bool = False         # True: the folder brings its scheduler, steps and guidance (few-step)
    optional: bool = False             # evaluated and registered only when evaluate.steps lists it
    registry_name_key: str | None = None   # registry.<key>: its registered model name; None: not registered
    gate_key: str | None = None            # registry.<key>: its promotion gate
    lineage: tuple[str, ...] = ()          # stages whose dvc.lock entries its model version records


ROSTER: tuple[Model, ...] = (
    Model("teacher", "teacher", "teacher.path", "the teacher pipeline"),
    Model("student", "distill", "distill.out_dir", "BK student distilled with Random Conditioning",
          train_section="distill", registry_name_key="model_name", gate_key="gate",
          lineage=("cache_latents", "distill", "evaluate")),
    Model("student_fast", "consistency", "consistency.out_dir",
          "Few-step student: latent consistency distillation with Random Conditioning, LCMScheduler, "
          "guidance embedded (no CFG pass)",
          train_section="consistency", own_sampling=True, optional=True, registry_name_key="fast_model_name", gate_key="fast_gate",
          lineage=("cache_latents", "distill", "consistency", "evaluate")),
    Model("student_boot", "boot", "boot.out_dir",
          "One-step student: BOOT (bootstrapped from noise and texts alone, no latents), guidance baked in",
          train_section="boot", own_sampling=True, optional=True, registry_name_key="boot_model_name",
          gate_key="boot_gate", lineage=("boot", "evaluate")),
)

MODEL_NAMES = tuple(m.name for m in ROSTER)
BY_NAME = {m.name: m for m in ROSTER}
REFERENCE = ROSTER[0]          # every other model is compared with it
STUDENTS = tuple(m for m in ROSTER if m.registry_name_key)


def lookup(params: Any, dotted: str) -> Any:
    """params.<a>.<b> for the key 'a.b'."""
    value = params
    for part in dotted.split("."):
        value = getattr(value, part)
    return value


def folder(model: Model, params: Any) -> str:
    return lookup(params, model.folder_key)
