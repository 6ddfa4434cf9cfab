"""Eval-set samples kept by the stage that drew them, so `evaluate` scores them instead of drawing
them again.

The teacher gate samples the teacher on both eval sets, and the distill and consistency stages
sample their students the same way for their concept checks: `evaluate` needs exactly those images
at each model's default steps. Each of those stages writes its images with a key over everything
that decides them: the pipeline folder's weights and configs, the scheduler, dtype and device, the
prompts, seeds, steps, guidance and batch size. `evaluate` reuses a set only when the key it
computes for its own sampling is equal, and samples the set otherwise.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save

from .fingerprint import teacher_fingerprint
from .io import atomic_write_bytes


@dataclass
class EvalSamples:
    rows: list[dict]          # the eval prompts: text, seed
    images: torch.Tensor      # uint8 (N,3,H,W), image i drawn for rows[i]


def sampling_key(pipe, folder: str | Path, rows: list[dict], steps: int, guidance_scale: float,
                 batch_size: int) -> str:
    """sha256 of what decides the images `sampling.generate` draws from `pipe` (loaded from `folder`)."""
    sched = pipe.scheduler
    parts = {
        "weights": teacher_fingerprint(str(folder)),
        "scheduler": [type(sched).__name__, {k: v for k, v in sched.config.items() if not k.startswith("_")}],
        "dtype": str(pipe.unet.dtype), "device": pipe.device.type,
        "texts": [r["text"] for r in rows], "seeds": [int(r["seed"]) for r in rows], "steps": int(steps),
        "guidance_scale": float(guidance_scale), "batch_size": int(batch_size),
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def keep_samples(path: str | Path, pipe, folder: str | Path, sets: dict[str, EvalSamples], sampling,
                 steps: int | None = None, guidance_scale: float | None = None) -> None:
    """Write each set's images (drawn from `pipe` with the `sampling` settings, or these steps and
    guidance) with its key, atomically. A stage that drew nothing writes the file without images:
    DVC expects its output."""
    steps = steps or sampling.steps
    guidance_scale = sampling.guidance_scale if guidance_scale is None else guidance_scale
    keys = {name: sampling_key(pipe, folder, e.rows, steps, guidance_scale, sampling.batch_size)
            for name, e in sets.items()}
    tensors = {name: e.images.contiguous() for name, e in sets.items()}
    atomic_write_bytes(path, save(tensors, metadata={"content": "rcdistill eval samples", **keys}))


def reuse_samples(path: str | Path, set_name: str, key: str) -> torch.Tensor | None:
    """The kept images of `set_name` when they were drawn under `key`, else None."""
    path = Path(path)
    if not path.is_file():
        return None
    with safe_open(path, framework="pt") as f:
        if (f.metadata() or {}).get(set_name) != key:
            return None
    return load_file(path)[set_name]
