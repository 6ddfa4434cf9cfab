"""Stage `codi`: CoDi, full: a few-step image-conditioned student, backbone and adapter trained, with RC texts."""
from __future__ import annotations

from ..codi.stage import report, run_codi_stage
from ..config import Params


def run(params: Params, args) -> int:
    return report(params, "full", run_codi_stage(params, "full", stop_after=args.stop_after))
