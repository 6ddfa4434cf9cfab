"""Stage `conditions`: an edge map and a low-res copy of every decoded cached latent, and of every
teacher eval image (the conditional models' test inputs); no image from outside the teacher."""
from __future__ import annotations

from ..codi.stage import run_conditions_stage
from ..config import Params


def run(params: Params, args) -> int:
    m = run_conditions_stage(params)
    sets = ", ".join(f"{k} {v['n']}" for k, v in m["eval"].items())
    print(f"conditions written to {params.conditions.out_dir}/: {m['n_train']} cached latents; eval images: {sets}")
    return 0
