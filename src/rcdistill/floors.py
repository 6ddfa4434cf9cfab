"""Floors on measured accuracies: one line per floor not met (the evaluators' and the teacher's checks)."""
from __future__ import annotations

import math


def floor_failures(measured: dict[str, dict[str, float] | float], floors: dict[str, float]) -> list[str]:
    """`measured[name]` is a number or a dict of per-attribute numbers (judged by its lowest); a floor
    whose measurement is missing or not a finite number fails too."""
    out = []
    for name, floor in floors.items():
        value = measured.get(name)
        if isinstance(value, dict):
            if not value:
                value = None
            else:
                attr, value = min(value.items(), key=lambda kv: kv[1] if math.isfinite(kv[1]) else -math.inf)
                name = f"{name}.{attr}"
        if value is None or not math.isfinite(value):
            out.append(f"{name} is {value!r}, not a finite measurement (floor {floor})")
        elif value < floor - 1e-6:  # float32 proportions: 108/120 reads 0.8999999
            out.append(f"{name} {value:.3f} < {floor}")
    return out
