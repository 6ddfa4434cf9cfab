"""The promotion gate: absolute floors/ceilings on the challenger, and the largest slip allowed
against the current champion. Pure logic, so it is tested on known numbers."""
from __future__ import annotations

import math
from dataclasses import dataclass

LOWER_IS_BETTER = ("fid", "kid", "ms_per", "s_per", "time", "ratio")


def lower_is_better(metric: str) -> bool:
    return any(key in metric for key in LOWER_IS_BETTER)


@dataclass
class Decision:
    promote: bool
    reason: str


def _not_finite(metrics: dict[str, float], names, whose: str) -> Decision | None:
    """NaN compares false with everything, so a NaN metric would clear every rule: it fails instead."""
    for metric in names:
        value = metrics.get(metric)
        if value is not None and not (isinstance(value, (int, float)) and math.isfinite(value)):
            return Decision(False, f"{whose} {metric} is {value!r}, not a finite number")
    return None


def decide(challenger: dict[str, float], champion: dict[str, float] | None, rules) -> Decision:
    bad = _not_finite(challenger, [*rules.min, *rules.max, *rules.vs_champion], "the challenger's")
    if bad is None and champion is not None:
        bad = _not_finite(champion, rules.vs_champion, "the champion's")
    if bad is not None:
        return bad
    for metric, floor in rules.min.items():
        if metric not in challenger:
            return Decision(False, f"gate metric {metric!r} is missing from the challenger's metrics")
        if challenger[metric] < floor:
            return Decision(False, f"{metric} {challenger[metric]:.4g} is below the floor {floor:.4g}")
    for metric, ceiling in rules.max.items():
        if metric not in challenger:
            return Decision(False, f"gate metric {metric!r} is missing from the challenger's metrics")
        if challenger[metric] > ceiling:
            return Decision(False, f"{metric} {challenger[metric]:.4g} is above the ceiling {ceiling:.4g}")
    if champion is None:
        return Decision(True, "no champion yet and every floor is met")
    for metric, slack in rules.vs_champion.items():
        if metric not in challenger or metric not in champion:
            return Decision(False, f"gate metric {metric!r} is missing from the challenger's or the champion's metrics")
        new, old = challenger[metric], champion[metric]
        worse = new > old + slack if lower_is_better(metric) else new < old - slack
        if worse:
            return Decision(False, f"{metric} {new:.4g} is worse than the champion's {old:.4g} by more than {slack:.4g}")
    return Decision(True, "meets every floor and is no worse than the champion beyond the allowed slack")
