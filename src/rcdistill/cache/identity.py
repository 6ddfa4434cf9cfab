"""Who made a cache and how: the teacher's fingerprint plus the generation settings."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path


def file_sha256(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def teacher_fingerprint(path_or_id: str) -> str:
    """Hash of a local pipeline folder's configs and weights; a hub id stands for itself."""
    root = Path(path_or_id)
    if not root.is_dir():
        return f"hub:{path_or_id}"
    h = hashlib.sha256()
    for f in sorted(p for p in root.rglob("*") if p.is_file()):
        if f.suffix in (".json", ".safetensors", ".txt", ".model"):
            h.update(str(f.relative_to(root)).encode())
            h.update(file_sha256(f).encode())
    return "sha256:" + h.hexdigest()


def texts_sha256(texts: list[str]) -> str:
    return hashlib.sha256(json.dumps(texts).encode()).hexdigest()
