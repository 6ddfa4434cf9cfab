"""Stage `consistency`: the few-step student (latent consistency distillation with RC)."""
from __future__ import annotations

from ..config import Params
from ..distill.consistency_stage import run_consistency_stage


def run(params: Params, args) -> int:
    m = run_consistency_stage(params)
    if "helper" in m:
        return 0
    check = "; ".join(f"{n} shape {m[n]['shape']:.3f} colour {m[n]['colour']:.3f}" for n in ("seen", "unseen") if n in m)
    print(f"few-step student written to {params.consistency.out_dir}/ (LCMScheduler, {m['steps']} steps, guidance "
          f"{m['guidance_scale']} embedded, no CFG pass){': ' + check if check else ''}")
    return 0
