"""What a registered version came from: DVC's hashes of its inputs (the folder's digest: `fingerprint.py`)."""
from __future__ import annotations

from pathlib import Path

import yaml


def dvc_hashes(stages: tuple[str, ...] = ("cache_latents", "distill", "evaluate"), lock: str = "dvc.lock") -> dict[str, str]:
    """{path: md5} for the deps and outs DVC recorded for `stages` (empty outside a DVC run)."""
    path = Path(lock)
    if not path.exists():
        return {}
    data = (yaml.safe_load(path.read_text()) or {}).get("stages", {})
    out: dict[str, str] = {}
    for stage in stages:
        for entry in data.get(stage, {}).get("deps", []) + data.get(stage, {}).get("outs", []):
            if "md5" in entry:
                out[entry["path"]] = entry["md5"]
    return out
