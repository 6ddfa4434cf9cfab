"""What a registered version came from: the student folder's digest and DVC's hashes of its inputs."""
from __future__ import annotations

import hashlib
from pathlib import Path

import yaml


def folder_digest(folder: str | Path) -> str:
    """sha256 over every file's relative path and bytes: the same student gives the same digest."""
    folder = Path(folder)
    h = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        h.update(path.relative_to(folder).as_posix().encode() + b"\0")
        with path.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


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
