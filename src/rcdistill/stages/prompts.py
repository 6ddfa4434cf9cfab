"""Stage `prompts`: the cache and RC prompt pools and the seen/unseen eval sets."""
from __future__ import annotations

from ..config import Params
from ..prompt_pools import write_prompts


def run(params: Params, args) -> int:
    out = write_prompts(params)
    print(f"prompts written to {out}/")
    return 0
