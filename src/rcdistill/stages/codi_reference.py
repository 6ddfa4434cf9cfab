"""Stage `codi_reference`: the conditional reference: the plain diffusion loss, sampled in many steps."""
from __future__ import annotations

from ..codi.stage import report, run_codi_stage
from ..config import Params


def run(params: Params, args) -> int:
    return report(params, "reference", run_codi_stage(params, "reference", stop_after=args.stop_after))
