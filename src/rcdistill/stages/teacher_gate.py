"""Stage `teacher_gate`: the teacher's quality gate; a failure (exit 1) stops everything downstream."""
from __future__ import annotations

from ..config import Params
from ..teacher.gate import run_teacher_gate


def run(params: Params, args) -> int:
    m = run_teacher_gate(params)
    print("teacher gate passed: " + (m.get("reason") or ", ".join(
        f"{k}: shape {m[k]['shape']:.3f} colour {m[k]['colour']:.3f}" for k in ("seen", "unseen") if k in m)))
    return 0
