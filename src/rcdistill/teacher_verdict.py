"""The teacher gate's verdict, read from its metrics file by the stages that must not start from a
teacher that failed it (cache_latents, boot): they read the file, not the gate's code."""
from __future__ import annotations

import json
from pathlib import Path

from .stage_table import metrics_file

TEACHER_GATE_METRICS = Path(metrics_file("teacher_gate"))


def teacher_gate_passed(path: Path = TEACHER_GATE_METRICS) -> bool | None:
    """The teacher gate's last verdict (its metrics file), or None when no gate ran here."""
    if not path.exists():
        return None
    return json.loads(path.read_text()).get("teacher", {}).get("passed")
