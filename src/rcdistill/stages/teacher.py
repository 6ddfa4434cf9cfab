"""Stage `teacher`: train the toy teacher pipeline, or prove a pretrained one loads offline."""
from __future__ import annotations

from ..config import Params
from ..stage_table import TEACHER_DIR
from ..teacher.stage import run_teacher_stage


def run(params: Params, args) -> int:
    metrics = run_teacher_stage(params)
    if params.teacher.source == "pretrained":
        print(f"pretrained teacher {params.teacher.path} loads offline; recorded in {TEACHER_DIR}/pretrained.json")
        return 0
    print(f"teacher pipeline written to {params.teacher.path}/ ; step checks: "
          + ", ".join(f"{k} {v:.3f}" for k, v in metrics.items()) + "; the gate is the teacher_gate stage")
    return 0
