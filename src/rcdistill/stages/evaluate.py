"""Stage `evaluate`: teacher and students on the same eval prompts and seeds."""
from __future__ import annotations

from ..config import Params
from ..evaluate.stage import run_evaluate_stage
from ..stage_table import stage
from ..summary import summary_lines


def run(params: Params, args) -> int:
    run_evaluate_stage(params)
    print("\n".join(line for line in summary_lines() if not line.startswith("registry:")))
    row = stage("evaluate")
    print(f"{', '.join(row.metrics + row.plots)}, grids in {params.evaluate.out_dir}/")
    return 0
