"""What a workspace's dvc.yaml declares: its stages in order, the ones the flow runs, their metrics files."""
from __future__ import annotations

import contextlib
import json
from pathlib import Path

import yaml

# The flow runs the stages from this one to the end of dvc.yaml, in dvc.yaml's order. The stages
# before it (prompts, evaluators, teacher, teacher_gate) are its upstream: `dvc repro cache_latents`
# reproduces them when they are stale, so they need no task of their own.
FIRST_FLOW_STAGE = "cache_latents"


def dvc_stages(ws: Path) -> dict[str, dict]:
    return (yaml.safe_load((ws / "dvc.yaml").read_text()) or {}).get("stages", {})


def flow_stages(ws: Path) -> list[str]:
    """The stages the flow runs by default: dvc.yaml's stages from FIRST_FLOW_STAGE on."""
    names = list(dvc_stages(ws))
    if FIRST_FLOW_STAGE not in names:
        raise ValueError(f"dvc.yaml in {ws} has no stage {FIRST_FLOW_STAGE!r}; stages there: {', '.join(names)}")
    return names[names.index(FIRST_FLOW_STAGE):]


def stage_metrics(ws: Path, stages: list[str]) -> dict[str, dict]:
    """The metrics files each stage declares in dvc.yaml, read as JSON (missing ones skipped)."""
    out: dict[str, dict] = {}
    defs = dvc_stages(ws)
    for stage in stages:
        for entry in defs.get(stage, {}).get("metrics", []) or []:
            rel = entry if isinstance(entry, str) else next(iter(entry))
            path = ws / rel
            if path.suffix == ".json" and path.exists():
                with contextlib.suppress(ValueError):
                    out[rel] = json.loads(path.read_text())
    return out
