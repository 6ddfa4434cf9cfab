"""Who made a cache and how: the teacher's fingerprint (`fingerprint.py`) plus the generation settings."""
from __future__ import annotations

import hashlib
import json


def texts_sha256(texts: list[str]) -> str:
    return hashlib.sha256(json.dumps(texts).encode()).hexdigest()
