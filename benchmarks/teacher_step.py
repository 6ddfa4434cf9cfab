"""Where the first run's time goes, part 1: the toy teacher's UNet training step on this CPU.

The teacher's UNet (params.yaml `teacher.unet`) trains 2 700 steps at batch 64, most of a first
`dvc repro`. This times one training step (forward, Min-SNR-free MSE, backward, AdamW) of that UNet
on random 8x8 latents in the ways a CPU could make it cheaper, in one run, and prints each as
steps/s and as a ratio to plain fp32:

- fp32 eager (what the stage does);
- bf16 autocast (oneDNN; uses AMX/AVX-512 bf16 where the CPU has them);
- torch.compile (inductor C++), with its one-off compile time;
- other batch sizes, as samples/s (fewer, larger steps only pay if the step is overhead-bound).

    .venv/bin/python benchmarks/teacher_step.py [--steps 15] [--no-compile] [--out FILE]
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
import rcdistill  # noqa: E402, F401  (offline env and import-time fixes)
from rcdistill.config import load_params  # noqa: E402
from rcdistill.teacher.unet import build_unet  # noqa: E402


def time_steps(batch: int, mode: str, steps: int, cfg, latent_channels: int, text_dim: int, text_len: int) -> dict:
    torch.manual_seed(0)
    unet = build_unet(cfg, 8, latent_channels, text_dim).train()
    opt = torch.optim.AdamW(unet.parameters(), lr=1e-3)
    forward = torch.compile(unet) if mode == "compile" else unet
    x = torch.randn(batch, latent_channels, 8, 8)
    cond = torch.randn(batch, text_len, text_dim)
    t = torch.randint(0, 1000, (batch,))

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=mode == "bf16"):
            out = forward(x, t, cond).sample
        loss = (out.float() - x).pow(2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    t0 = time.perf_counter()
    for _ in range(2):  # warm-up (and, compiled, the compile itself)
        step()
    warm = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    per_step = (time.perf_counter() - t0) / steps
    return {"mode": mode, "batch": batch, "steps_per_s": 1 / per_step, "samples_per_s": batch / per_step,
            "warmup_s": warm}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--steps", type=int, default=15)
    ap.add_argument("--no-compile", action="store_true")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/teacher_step.json"))
    args = ap.parse_args()
    p = load_params(args.params)
    cfg, batch = p.teacher.unet, p.teacher.unet.batch_size
    shape = dict(latent_channels=p.teacher.vae.latent_channels, text_dim=p.teacher.text_encoder.hidden_size,
                 text_len=p.teacher.text_encoder.max_length)
    runs = [("fp32", batch), ("bf16", batch), ("fp32", batch // 2), ("fp32", batch * 2)]
    if not args.no_compile:
        runs.append(("compile", batch))
    rows = [time_steps(b, mode, args.steps, cfg, **shape) for mode, b in runs]
    base = rows[0]["samples_per_s"]
    for r in rows:
        r["vs_fp32_eager"] = r["samples_per_s"] / base
        print(f"{r['mode']:>8} batch {r['batch']:>3}: {r['steps_per_s']:5.2f} steps/s, {r['samples_per_s']:6.1f} "
              f"samples/s, {r['vs_fp32_eager']:.2f}x (warm-up {r['warmup_s']:.1f} s)")
    steps = cfg.steps
    print(f"teacher.unet.steps = {steps} at batch {batch}: {steps / rows[0]['steps_per_s'] / 60:.1f} min of UNet "
          f"training at the fp32 rate")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"machine": platform.processor() or platform.machine(),
                                    "threads": torch.get_num_threads(), "torch": torch.__version__,
                                    "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
