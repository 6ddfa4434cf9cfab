"""Stage `cache_latents`: teacher latents for the cache prompt pool, in sharded safetensors.

Layout of `cache.out_dir`:
- shard-00000.safetensors ...   {"latents": (n, C, h, w)}, written to a temp name then renamed
- manifest.json                 identity (teacher fingerprint + generation settings), the shards
                                done so far (file, rows, sha256) and every row (prompt, seed, shard,
                                row). Rewritten atomically after each shard: it is the resume point.

Row i uses prompt i // latents_per_prompt and seed cache.seed + i, and shards are fixed slices
of rows, so a killed run restarted keeps its complete shards, redoes the rest and ends with
exactly the same files; N data-parallel workers (`--worker i/N`, or `accelerate launch`) each
make every N-th shard and record it in the shared manifest under a file lock, again ending with
the same files. A cache made by another teacher or other settings is refused.
"""
from __future__ import annotations

import fcntl
import json
import os
import re
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from ..config import Params
from ..errors import CacheError, UserError
from ..fingerprint import file_sha256, teacher_fingerprint
from ..io import atomic_write_json, read_jsonl
from ..precision import frozen_dtype
from ..sampling import device, generate, load_pipeline
from ..teacher_verdict import TEACHER_GATE_METRICS, teacher_gate_passed
from .identity import texts_sha256

MANIFEST = "manifest.json"


def cache_identity(params: Params, prompts: list[str]) -> dict:
    s, c = params.sampling, params.cache
    return {
        "teacher": params.teacher.path,
        "teacher_fingerprint": teacher_fingerprint(params.teacher.path),
        "scheduler": s.scheduler,
        "steps": s.steps,
        "guidance_scale": s.guidance_scale,
        "seed": c.seed,
        "latents_per_prompt": c.latents_per_prompt,
        "shard_size": c.shard_size,
        "dtype": c.dtype,
        "teacher_dtype": str(frozen_dtype(c.teacher_dtype, device())).removeprefix("torch."),
        "prompts_sha256": texts_sha256(prompts),
        "n_rows": len(prompts) * c.latents_per_prompt,
    }


def _describe_difference(old: dict, new: dict) -> str:
    keys = [k for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
    return ", ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in keys[:4])


def load_manifest(folder: Path) -> dict | None:
    path = folder / MANIFEST
    return json.loads(path.read_text()) if path.exists() else None


def verify_shards(folder: Path, manifest: dict) -> None:
    for shard in manifest["shards"]:
        path = folder / shard["file"]
        if not path.exists():
            raise CacheError(f"{path}: shard missing from the latent cache")
        if file_sha256(path) != shard["sha256"]:
            raise CacheError(f"{path}: checksum mismatch (the shard is corrupt); delete it and rerun cache_latents")


def worker_slot(spec: str | None = None) -> tuple[int, int]:
    """This worker's index and the number of workers: `--worker i/N`, else the launcher's
    RANK/WORLD_SIZE (accelerate launch, torchrun), else 0/1."""
    if spec:
        m = re.fullmatch(r"(\d+)/(\d+)", spec)
        if not m or not 0 <= int(m[1]) < int(m[2]):
            raise UserError(f"--worker {spec!r}: expected i/N with 0 <= i < N, e.g. 0/4")
        return int(m[1]), int(m[2])
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


@contextmanager
def _manifest_lock(folder: Path) -> Iterator[None]:
    """Workers share one manifest: each read-modify-write of it holds this lock (beside the
    folder, so the cache's own files stay exactly the shards and the manifest)."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.parent / f".{folder.name}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _open_manifest(folder: Path, identity: dict, rows: list[dict], rebuild: bool) -> dict:
    """The manifest to build on (under the lock): this cache's, or a new one."""
    manifest = load_manifest(folder)
    if manifest is not None and manifest["identity"] != identity:
        difference = _describe_difference(manifest["identity"], identity)
        if not rebuild:
            raise CacheError(
                f"{folder}: latents were made by another teacher or settings ({difference}); "
                f"refusing to mix them. Delete {folder} or run `rcd cache-latents --rebuild`")
        print(f"cache_latents: discarding {folder}, made by another teacher or settings ({difference})")
        manifest = None
    if manifest is None:
        for stale in folder.glob("shard-*.safetensors"):
            stale.unlink()
        manifest = {"identity": identity, "shards": [], "rows": rows}
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_json(folder / MANIFEST, manifest)
    else:
        verify_shards(folder, manifest)  # complete shards must still be intact before we build on them
    return manifest


def _record_shard(folder: Path, entry: dict) -> int:
    """Add a finished shard to the shared manifest (in shard order, whoever wrote it); returns how many are done."""
    with _manifest_lock(folder):
        manifest = load_manifest(folder)
        manifest["shards"] = sorted([s for s in manifest["shards"] if s["file"] != entry["file"]] + [entry],
                                    key=lambda s: s["file"])
        atomic_write_json(folder / MANIFEST, manifest)
        return len(manifest["shards"])


def build_cache(params: Params, rebuild: bool = False, worker: str | None = None) -> Path:
    """Make (or finish) the latent cache. With N workers, worker i makes shards i, i+N, ...; shards
    are fixed slices of rows with per-row seeds, so any N gives the same files as one process."""
    if teacher_gate_passed() is False:
        raise CacheError(f"{TEACHER_GATE_METRICS}: the teacher failed its quality gate; no latents are cached from it")
    index, n_workers = worker_slot(worker)
    folder = Path(params.cache.out_dir)
    prompts = [r["text"] for r in read_jsonl(Path(params.prompts.out_dir) / "cache.jsonl")]
    identity = cache_identity(params, prompts)
    c = params.cache
    rows = [{"prompt": prompts[i // c.latents_per_prompt], "seed": c.seed + i, "shard": i // c.shard_size,
             "row": i % c.shard_size} for i in range(identity["n_rows"])]
    n_shards = (len(rows) + c.shard_size - 1) // c.shard_size
    with _manifest_lock(folder):
        manifest = _open_manifest(folder, identity, rows, rebuild)
    done = {s["file"] for s in manifest["shards"]}
    mine = [k for k in range(index, n_shards, n_workers) if _shard_name(k) not in done]
    for k in mine:
        (folder / f".{_shard_name(k)}.tmp").unlink(missing_ok=True)  # leftovers of a killed write of ours
    if not mine:
        return folder
    pipe = load_pipeline(params.teacher.path, params.sampling.scheduler, frozen_dtype(c.teacher_dtype, device()))
    dtype = getattr(torch, c.dtype)
    label = "cache latents" + (f" (worker {index}/{n_workers})" if n_workers > 1 else "")
    bar = tqdm(total=len(mine), desc=label, unit="shard")
    for k in mine:
        part = rows[k * c.shard_size: (k + 1) * c.shard_size]
        t0 = time.perf_counter()
        latents = generate(pipe, [r["prompt"] for r in part], [r["seed"] for r in part], params.sampling.steps,
                           params.sampling.guidance_scale, params.sampling.batch_size, output_type="latent",
                           desc=f"shard {k}").to(dtype).contiguous()
        name = _shard_name(k)
        tmp = folder / f".{name}.tmp"
        save_file({"latents": latents}, tmp)
        tmp.replace(folder / name)
        n_done = _record_shard(folder, {"file": name, "rows": len(part), "sha256": file_sha256(folder / name)})
        bar.update(1)
        bar.set_postfix(latents_per_s=f"{len(part) / (time.perf_counter() - t0):.1f}", cache=f"{n_done}/{n_shards}")
    bar.close()
    return folder


def _shard_name(k: int) -> str:
    return f"shard-{k:05d}.safetensors"


def load_cache(folder: str | Path, expect_teacher: str | None = None) -> tuple[torch.Tensor, list[dict], dict]:
    """All latents (float32), their rows and the identity; checks completeness and checksums."""
    folder = Path(folder)
    manifest = load_manifest(folder)
    if manifest is None:
        raise CacheError(f"{folder / MANIFEST}: no latent cache here; run the cache_latents stage first")
    ident = manifest["identity"]
    if sum(s["rows"] for s in manifest["shards"]) < ident["n_rows"]:
        raise CacheError(f"{folder}: the latent cache is incomplete; rerun cache_latents to finish it")
    if expect_teacher is not None and ident["teacher_fingerprint"] != teacher_fingerprint(expect_teacher):
        raise CacheError(f"{folder}: latents were made by teacher {ident['teacher']!r} with other weights than "
                         f"{expect_teacher!r}; rebuild the cache for this teacher")
    verify_shards(folder, manifest)
    latents = torch.cat([load_file(folder / s["file"])["latents"].float() for s in manifest["shards"]])
    return latents, manifest["rows"], ident
