"""Stage `codi_adapter`: CoDi, parameter-efficient: the backbone frozen, only the condition adapter trained."""
from __future__ import annotations

from ..codi.stage import report, run_codi_stage
from ..config import Params


def run(params: Params, args) -> int:
    return report(params, "adapter", run_codi_stage(params, "adapter", stop_after=args.stop_after))
