"""Stage `codi_register`: the image-conditioned models (CoDi full, adapter-only) into the MLflow
registry as `challenger`, each promoted by `registry.codi_gate`."""
from __future__ import annotations

from ..config import Params
from ..registry.stage import run_codi_register_stage
from .register import print_registration


def run(params: Params, args) -> int:
    for r in run_codi_register_stage(params).values():
        print_registration(r)
    return 0
