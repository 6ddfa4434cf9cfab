"""Stage `codi_eval`: every conditional model at its eval steps, on the seen and held-out conditions."""
from __future__ import annotations

from pathlib import Path

from ..codi.stage import run_codi_eval_stage
from ..config import Params
from ..io import atomic_write_json
from ..stage_table import metrics_file


def run(params: Params, args) -> int:
    m = run_codi_eval_stage(params)
    atomic_write_json(Path(metrics_file("codi_eval")), {"codi_eval": m})
    for run, entry in m["models"].items():
        for steps, cell in entry["steps"].items():
            parts = [f"{name}: " + ", ".join(f"{k} {cell[name][k]:.3f}" for k in ("edge_f1", "psnr", "shape", "colour")
                                             if k in cell[name]) for name in cell]
            print(f"{run} at {steps} steps: " + "; ".join(parts))
    return 0
