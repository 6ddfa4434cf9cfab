"""Stage `cache_latents`: teacher latents for the cache prompt pool, in sharded safetensors.

Layout of `cache.out_dir`:
- shard-00000.safetensors ...   {"latents": (n, C, h, w)}, written to a temp name then renamed
- manifest.json                 identity (teacher fingerprint + generation settings), the shards
                                done so far (file, rows, sha256) and every row (prompt, seed, shard,
                                row). Rewritten atomically after each shard: it is the resume point.

Row i uses prompt i // latents_per_prompt and seed cache.seed + i, and shards are fixed slices
of rows, so a killed run restarted keeps its complete shards, redoes the rest and ends with
exactly the same files. A cache made by another teacher or other settings is refused.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from ..config import Params
from ..errors import CacheError
from ..io import atomic_write_json, read_jsonl
from ..sampling import generate, load_pipeline
from .identity import file_sha256, teacher_fingerprint, texts_sha256

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


def build_cache(params: Params, rebuild: bool = False) -> Path:
    from ..teacher.gate import METRICS_FILE, gate_passed

    if gate_passed() is False:
        raise CacheError(f"{METRICS_FILE}: the teacher failed its quality gate; no latents are cached from it")
    folder = Path(params.cache.out_dir)
    prompts = [r["text"] for r in read_jsonl(Path(params.prompts.out_dir) / "cache.jsonl")]
    identity = cache_identity(params, prompts)
    c = params.cache
    rows = [{"prompt": prompts[i // c.latents_per_prompt], "seed": c.seed + i, "shard": i // c.shard_size,
             "row": i % c.shard_size} for i in range(identity["n_rows"])]
    n_shards = (len(rows) + c.shard_size - 1) // c.shard_size

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
    else:
        verify_shards(folder, manifest)  # complete shards must still be intact before we build on them
    folder.mkdir(parents=True, exist_ok=True)
    for tmp in folder.glob(".*.tmp"):
        tmp.unlink()  # leftovers of a killed write

    done = len(manifest["shards"])
    if done == n_shards:
        return folder
    pipe = load_pipeline(params.teacher.path, params.sampling.scheduler)
    dtype = getattr(torch, c.dtype)
    bar = tqdm(total=len(rows), initial=done * c.shard_size, desc="cache latents", unit="latent", mininterval=2)
    for shard in range(done, n_shards):
        part = rows[shard * c.shard_size: (shard + 1) * c.shard_size]
        t0 = time.perf_counter()
        latents = generate(pipe, [r["prompt"] for r in part], [r["seed"] for r in part], params.sampling.steps,
                           params.sampling.guidance_scale, params.sampling.batch_size, output_type="latent",
                           desc=f"shard {shard}").to(dtype).contiguous()
        name = f"shard-{shard:05d}.safetensors"
        tmp = folder / f".{name}.tmp"
        save_file({"latents": latents}, tmp)
        tmp.replace(folder / name)
        manifest["shards"].append({"file": name, "rows": len(part), "sha256": file_sha256(folder / name)})
        atomic_write_json(folder / MANIFEST, manifest)
        bar.update(len(part))
        bar.set_postfix(latents_per_s=f"{len(part) / (time.perf_counter() - t0):.1f}")
    bar.close()
    return folder


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
