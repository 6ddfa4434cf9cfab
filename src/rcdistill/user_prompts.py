"""Prompt pools from user files (real-model profile): one prompt per line, `#` starts a comment.

The cache pool keeps the prompts that contain none of `prompts.exclude_keywords` (whole words,
any case): those concepts then appear in no cached latent. The RC pool keeps every prompt of
`prompts.rc_file`; eval `unseen` takes RC prompts that do name an excluded keyword, eval
`seen` RC prompts that do not.
"""
from __future__ import annotations

import random
import re
from pathlib import Path

from .errors import PromptFileError


def read_prompt_file(path: str | Path, key: str) -> list[str]:
    path = Path(path)
    if not path.is_file():
        raise PromptFileError(f"{key}: prompt file {path} not found")
    lines = [ln.split("#", 1)[0].strip() for ln in path.read_text(encoding="utf-8").splitlines()]
    prompts = list(dict.fromkeys(ln for ln in lines if ln))  # distinct, in file order
    if not prompts:
        raise PromptFileError(f"{key}: prompt file {path} holds no prompt")
    return prompts


def names_keyword(text: str, keywords: list[str]) -> bool:
    words = set(re.findall(r"[a-z0-9]+", text.lower()))
    return any(k.lower() in words for k in keywords)


def pools_from_files(cfg) -> dict[str, list[dict]]:
    rng = random.Random(cfg.seed)
    cache_all = read_prompt_file(cfg.cache_file, "prompts.cache_file")
    rc = read_prompt_file(cfg.rc_file, "prompts.rc_file")
    cache = [p for p in cache_all if not names_keyword(p, cfg.exclude_keywords)]
    if not cache:
        raise PromptFileError("prompts.exclude_keywords: every cache prompt names an excluded keyword; nothing to cache")
    cache = cache[: cfg.cache_pool_size]
    rng.shuffle(rc)
    seen = [p for p in rc if not names_keyword(p, cfg.exclude_keywords)][: cfg.eval_per_set]
    unseen = [p for p in rc if names_keyword(p, cfg.exclude_keywords)][: cfg.eval_per_set]
    row = lambda t: {"text": t}  # noqa: E731
    return {
        "cache": [row(t) for t in cache],
        "rc": [row(t) for t in rc],
        "eval_seen": [{**row(t), "seed": 10_000 + i} for i, t in enumerate(seen)],
        "eval_unseen": [{**row(t), "seed": 20_000 + i} for i, t in enumerate(unseen)],
    }
