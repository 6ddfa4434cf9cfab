"""The pipeline as the flow sees it: the stage table's stages and metrics, and what a workspace's dvc.yaml declares."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import yaml

from rcdistill.stage_table import BY_NAME, FLOW_STAGES

log = logging.getLogger(__name__)


def dvc_stages(ws: Path) -> dict[str, dict]:
    return (yaml.safe_load((ws / "dvc.yaml").read_text()) or {}).get("stages", {})


def flow_stages() -> list[str]:
    """The stages the flow runs by default: the stage table's from cache_latents on (the ones before
    it are its upstream: `dvc repro cache_latents` reproduces them when they are stale)."""
    return list(FLOW_STAGES)


def stage_metrics(ws: Path, stages: list[str]) -> dict[str, dict]:
    """The metrics files of `stages` (stage table), read as JSON; a missing one is skipped (the stage
    did not run), an unreadable one is reported and skipped."""
    out: dict[str, dict] = {}
    for stage in stages:
        for rel in BY_NAME[stage].metrics if stage in BY_NAME else ():
            path = ws / rel
            if not path.exists():
                continue
            try:
                out[rel] = json.loads(path.read_text())
            except ValueError as err:
                log.warning("%s: not valid JSON (%s); left out of the flow's summary", path, err)
    return out
