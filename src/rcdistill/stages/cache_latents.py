"""Stage `cache_latents`: teacher latents for the cache prompt pool, in resumable shards."""
from __future__ import annotations

from ..cache.latents import build_cache, load_manifest
from ..config import Params


def run(params: Params, args) -> int:
    folder = build_cache(params, rebuild=args.rebuild, worker=args.worker)
    m = load_manifest(folder)
    have, want = sum(s["rows"] for s in m["shards"]), m["identity"]["n_rows"]
    state = "complete" if have == want else f"{have} of {want} latents so far (other workers still running?)"
    print(f"teacher latents cached in {folder}/: {state} (manifest.json lists prompts, seeds, shards, checksums)")
    return 0
