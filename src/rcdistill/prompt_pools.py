"""Stage `prompts`: the cache prompt pool, the Random Conditioning text pool and the eval sets.

Formats (JSON lines, one object per line, all under prompts.out_dir):
- cache.jsonl      {text, shape, colour, size, position}: captions naming no held-out concept;
                   each gets a teacher latent later. size/position are null when the text omits them.
- rc.jsonl         same fields: every distinct caption of the world (held-out concepts included),
                   shuffled, optionally capped; the texts Random Conditioning draws from.
- eval_seen.jsonl  {text, shape, colour, size, position, seed}: full captions of seen concepts.
- eval_unseen.jsonl same, each naming at least one held-out concept.
- cache_texts.txt, rc_texts.txt: the two pools' distinct texts, sorted, one per line (the order
                   of rc.jsonl follows the held-out list; this file does not).
- summary.json     counts and the held-out concepts.
With prompts.source: files (real models) the pools come from user files instead
(see rcdistill/user_prompts.py); rows then hold only {text} (and seed for eval sets).
"""
from __future__ import annotations

import random
from pathlib import Path

from .config import Params
from .io import atomic_dir, atomic_write_json, atomic_write_text, write_jsonl
from .user_prompts import pools_from_files
from .world.captions import Caption, all_captions, caption
from .world.vocab import ATTRIBUTES, CONCEPTS

POOLS = ("cache", "rc", "eval_seen", "eval_unseen")
TEXT_LISTS = ("cache", "rc")


def _is_seen(c: Caption, unseen: set[str]) -> bool:
    return c.shape not in unseen and c.colour not in unseen


def _eval_set(n: int, rng: random.Random, unseen: list[str], want_unseen: bool, seed0: int) -> list[dict]:
    rows = []
    for i in range(n):
        attrs = {a: rng.choice(v) for a, v in ATTRIBUTES.items()}
        if want_unseen:  # force one held-out concept, the rest free
            concept = unseen[i % len(unseen)]
            attrs[CONCEPTS[concept]] = concept
        else:
            for a in ("shape", "colour"):
                attrs[a] = rng.choice([x for x in ATTRIBUTES[a] if x not in unseen])
        cap = caption(attrs["shape"], attrs["colour"], attrs["size"], attrs["position"], rng, full=True)
        rows.append({**cap.to_json(), "seed": seed0 + i})
    return rows


def build_pools(params: Params) -> dict[str, list[dict]]:
    unseen = params.world.unseen
    cfg = params.prompts
    rng = random.Random(cfg.seed)
    every = all_captions()
    seen_caps = [c for c in every if _is_seen(c, set(unseen))]
    cache = rng.sample(seen_caps, min(cfg.cache_pool_size, len(seen_caps)))
    rc = list(every)
    rng.shuffle(rc)
    if cfg.rc_pool_size:
        rc = rc[: cfg.rc_pool_size]
    pools = {
        "cache": [c.to_json() for c in cache],
        "rc": [c.to_json() for c in rc],
        "eval_seen": _eval_set(cfg.eval_per_set, rng, unseen, False, seed0=10_000),
        "eval_unseen": _eval_set(cfg.eval_per_set, rng, unseen, True, seed0=20_000) if unseen else [],
    }
    return pools


def write_prompts(params: Params) -> Path:
    if params.prompts.source == "files":
        pools = pools_from_files(params.prompts)
    else:
        pools = build_pools(params)
    out = Path(params.prompts.out_dir)
    with atomic_dir(out) as tmp:
        for name, rows in pools.items():
            write_jsonl(tmp / f"{name}.jsonl", rows)
        for name in TEXT_LISTS:  # the texts alone, sorted: what a stage that draws texts only (boot) reads
            atomic_write_text(tmp / f"{name}_texts.txt", "".join(f"{t}\n" for t in sorted({r["text"] for r in pools[name]})))
        atomic_write_json(
            tmp / "summary.json",
            {"unseen": params.world.unseen, **{f"n_{k}": len(v) for k, v in pools.items()}},
        )
    return out
