"""What DVC recorded: the md5 of each stage's deps and outs in dvc.lock (empty outside a DVC run): a
registered version's lineage, and the digest of each dataset a stage run logs in MLflow."""
from __future__ import annotations

from pathlib import Path

import yaml


def dvc_hashes(stages: tuple[str, ...] | None = None, lock: str = "dvc.lock") -> dict[str, str]:
    """{path: md5} for the deps and outs DVC recorded for `stages` (None: every stage)."""
    path = Path(lock)
    if not path.exists():
        return {}
    data = (yaml.safe_load(path.read_text()) or {}).get("stages", {})
    out: dict[str, str] = {}
    for stage in data if stages is None else stages:
        for entry in data.get(stage, {}).get("deps", []) + data.get(stage, {}).get("outs", []):
            if "md5" in entry:
                out[entry["path"]] = entry["md5"]
    return out
