"""Stage `distill`: Random Conditioning knowledge distillation into a BK student pipeline."""
from __future__ import annotations

from ..config import Params
from ..distill.stage import run_distill_stage


def run(params: Params, args) -> int:
    metrics = run_distill_stage(params, stop_after=args.stop_after)
    if "helper" in metrics:
        return 0  # a data-parallel helper process: the main process reports
    if "stopped_at" in metrics:
        print(f"stopped after step {metrics['stopped_at']} (checkpoints in {params.distill.work_dir}/; rerun to resume)")
        return 0
    print(f"student pipeline written to {params.distill.out_dir}/ ({metrics['student']}: "
          f"{metrics['student_unet_params'] / 1e6:.2f}M UNet parameters, {metrics['param_ratio']:.2f}x the teacher's)")
    return 0
