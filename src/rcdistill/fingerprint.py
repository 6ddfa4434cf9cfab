"""Content hashes: of a file, and of a pipeline folder (which teacher made a cache, which one was registered)."""
from __future__ import annotations

import hashlib
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
