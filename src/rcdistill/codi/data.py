"""The conditions stage's files: every cached latent's conditions (decoded by the teacher's VAE,
then derived), and the teacher's eval-set images with theirs, the CoDi models' test inputs.

`train.safetensors`: `edge`, `lowres` (one row per cached latent, in cache order);
`eval.safetensors`: `<set>.images` (the teacher's own eval samples, kept by its gate), `<set>.edge`,
`<set>.lowres`; `manifest.json`: what they were made from (the cache's identity, the settings).
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from ..errors import UserError
from ..io import atomic_dir, read_jsonl
from ..teacher.vae import decode
from .conditions import TASKS, derive

MANIFEST = "manifest.json"
EVAL_SETS = ("seen", "unseen")


def identity_digest(cache_identity: dict) -> str:
    return hashlib.sha256(json.dumps(cache_identity, sort_keys=True).encode()).hexdigest()


def write_conditions(out_dir: str | Path, vae, latents: torch.Tensor, cache_identity: dict,
                     eval_images: dict[str, torch.Tensor], eval_rows: dict[str, list[dict]], edge_threshold: float,
                     lowres_factor: int, sheet=None) -> dict:
    """Derive and write every condition atomically; returns the manifest."""
    images = decode(vae, latents)
    train = {task: derive(task, images, edge_threshold, lowres_factor).contiguous() for task in TASKS}
    evals = {}
    for name, imgs in eval_images.items():
        evals[f"{name}.images"] = imgs.contiguous()
        for task in TASKS:
            evals[f"{name}.{task}"] = derive(task, imgs, edge_threshold, lowres_factor).contiguous()
    manifest = {"cache": identity_digest(cache_identity), "n_train": len(latents),
                "edge_threshold": edge_threshold, "lowres_factor": lowres_factor,
                "eval": {name: {"n": len(rows), "texts": [r["text"] for r in rows], "seeds": [r["seed"] for r in rows]}
                         for name, rows in eval_rows.items()}}
    with atomic_dir(out_dir) as tmp:
        save_file(train, tmp / "train.safetensors")
        save_file(evals, tmp / "eval.safetensors")
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1))
        if sheet is not None:
            sheet(images, train).save(tmp / "conditions.png")
    return manifest


def load_train_conditions(folder: str | Path, task: str, cache_identity: dict) -> torch.Tensor:
    """The cached latents' conditions for `task`, checked against the cache they were derived from."""
    folder = Path(folder)
    manifest_file = folder / MANIFEST
    if not manifest_file.is_file():
        raise UserError(f"{manifest_file}: no conditions here; run the conditions stage first")
    manifest = json.loads(manifest_file.read_text())
    if manifest["cache"] != identity_digest(cache_identity):
        raise UserError(f"{folder}: the conditions were derived from another latent cache; rerun the conditions stage")
    return load_file(folder / "train.safetensors")[task]


def load_eval_set(folder: str | Path, name: str) -> tuple[dict, dict[str, torch.Tensor]]:
    """An eval set's rows (texts, seeds) and tensors (`images` and one per task)."""
    folder = Path(folder)
    manifest = json.loads((folder / MANIFEST).read_text())
    tensors = load_file(folder / "eval.safetensors")
    prefix = f"{name}."
    return manifest["eval"][name], {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}


def eval_rows(prompts_dir: str | Path, name: str, n: int) -> list[dict]:
    return read_jsonl(Path(prompts_dir) / f"eval_{name}.jsonl")[:n]
