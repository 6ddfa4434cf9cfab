"""The teacher gate's verdict: a file of its own, read by the stages that must not start from a
teacher that failed the gate (cache_latents, boot). They depend on this file and not on the gate's
metrics, which change with every eval set (another world.unseen) while the verdict does not."""
from __future__ import annotations

import json
from pathlib import Path

from .io import atomic_write_json
from .stage_table import metrics_file

TEACHER_GATE_METRICS = Path(metrics_file("teacher_gate", 1))


def write_verdict(passed: bool, path: Path = TEACHER_GATE_METRICS) -> None:
    atomic_write_json(path, {"teacher_gate": {"passed": bool(passed)}})


def teacher_gate_passed(path: Path = TEACHER_GATE_METRICS) -> bool | None:
    """The teacher gate's last verdict, or None when no gate ran here."""
    if not path.exists():
        return None
    return json.loads(path.read_text()).get("teacher_gate", {}).get("passed")
