#!/usr/bin/env bash
# The prepared GPU check: one script for a machine with an NVIDIA GPU, Python 3.12 and torch
# (with transformers, accelerate, safetensors) but none of the project's other packages and no
# network. About 6-8 minutes on one H100/H200:
#   1. installs what is missing from a folder of wheels (benchmarks/gpu_wheels.txt says how to
#      make it, on any machine with a package registry);
#   2. builds the SD v1-shaped random teacher (64x64 latents) and its random judges (rcd sd-random);
#   3. benchmarks/distill_throughput.py: naive fp32 vs ours at batch 16, ours at batch 64 in fp16
#      and bf16, with and without torch.compile, MFU from FlopCounterMode, peak memory, and the
#      latent-caching rate (25 DDIM steps with CFG);
#   4. the sd-random profile end to end in fp16 (every dvc.yaml stage in order, tiny counts).
# Everything lands in one JSON, $OUT_DIR/gpu_check.json (default benchmarks/results/).
#
#   WHEELS=.whl bash benchmarks/gpu_check.sh [OUT_DIR]
#
# CONFIGS="naive:16 ours:64:bf16:compile" runs only those throughput settings (distill_throughput.py's
# kind:batch[:precision[:compile]]); the naive row is the baseline each run's ratios need.
# WHEELS=none skips the install (a machine that has the packages); SMOKE=1 shrinks every count,
# the latents to 8x8 and the UNet's widths to a tenth, so the whole script's plumbing can be checked
# on a CPU in minutes (tests/test_gpu_check.py; tests/test_sd_random.py runs SD's widths on a CPU).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT_DIR="$(mkdir -p "${1:-benchmarks/results}" && cd "${1:-benchmarks/results}" && pwd)"
WHEELS="${WHEELS:-.whl}"
SCRATCH="${SCRATCH:-$(mktemp -d /tmp/rcd-gpu-check.XXXXXX)}"
PY="${PYTHON:-python3}"
t0=$(date +%s)

if [ "$WHEELS" != none ]; then
  ls "$WHEELS"/*.whl >/dev/null 2>&1 || { echo "gpu_check: no wheels in $WHEELS (see benchmarks/gpu_wheels.txt)" >&2; exit 2; }
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SCRATCH/site" \
    "$WHEELS"/*.whl
  export PYTHONPATH="$SCRATCH/site:$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
else
  export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
fi
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONWARNINGS=ignore PYTHONUNBUFFERED=1
"$PY" - <<'PY'
import rcdistill.cli  # noqa: F401  (first: its import-time fixes, as every entry point does)
import torch, diffusers, transformers, accelerate, pydantic, mlflow, open_clip, cleanfid  # noqa: F401
gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU"
print(f"gpu_check: torch {torch.__version__}, diffusers {diffusers.__version__}, transformers "
      f"{transformers.__version__}, accelerate {accelerate.__version__}, mlflow {mlflow.__version__}; {gpu}")
PY

if [ "${SMOKE:-0}" = 1 ]; then
  LATENT=8; WIDTH=32; CONFIGS="naive:1 ours:1"; STEPS=1; CACHE_BATCH=2; CACHE_STEPS=2; BUDGET=600
  E2E_SET=(world.image_size=64 prompts.cache_pool_size=8 prompts.eval_per_set=4 sampling.steps=2
           sampling.batch_size=4 cache.shard_size=4 distill.steps=2 distill.warmup_steps=1 distill.batch_size=2
           distill.mixed_precision=no distill.teacher_dtype=float32 consistency.steps=2 consistency.warmup_steps=1
           consistency.batch_size=2 consistency.mixed_precision=no
           consistency.teacher_dtype=float32 boot.steps=2 boot.warmup_steps=1 boot.batch_size=2
           boot.mixed_precision=no boot.teacher_dtype=float32 codi.train.batch_size=2 codi.train.warmup_steps=1
           codi.train.mixed_precision=no codi.train.teacher_dtype=float32 codi.reference.steps=2
           codi.reference.default_steps=2 codi.full.steps=2 codi.full.default_steps=1 codi.adapter.steps=2
           codi.adapter.default_steps=1 codi.eval_per_set=4 "codi.eval_steps={reference: [2], full: [1], adapter: [1]}"
           evaluate.latency_repeats=1 evaluate.grid_prompts=2
           evaluate.diversity_prompts=2 evaluate.diversity_seeds=2
           "evaluate.steps={teacher: [2], student: [2], student_fast: [1], student_boot: [1]}")
else
  LATENT=64; WIDTH=320; STEPS=10; CACHE_BATCH=32; CACHE_STEPS=25; BUDGET="${BUDGET:-180}"
  CONFIGS="${CONFIGS:-naive:16 ours:16:fp16 ours:64:fp16 ours:64:bf16 ours:64:fp16:compile ours:64:bf16:compile}"
  E2E_SET=()
fi

echo "== 1. SD v1-shaped random teacher, ${LATENT}x${LATENT} latents, UNet width $WIDTH"
"$PY" -m rcdistill.cli sd-random --out "$SCRATCH/e2e/models/sd_random" --latent-size "$LATENT" --unet-width "$WIDTH" \
  2>&1 | tail -1

echo "== 2. throughput (settings start within ${BUDGET} s)"
# shellcheck disable=SC2086
"$PY" benchmarks/distill_throughput.py --teacher "$SCRATCH/e2e/models/sd_random/teacher" --configs $CONFIGS \
  --steps "$STEPS" --cache-batch "$CACHE_BATCH" --cache-steps "$CACHE_STEPS" --budget-s "$BUDGET" \
  --out "$OUT_DIR/gpu_throughput.json" 2>&1 | { grep --line-buffered -v -E "it/s|step/s|batch/s|Loading|float32|deprecat" || true; } \
  || tp_rc=${PIPESTATUS[0]}  # the throughput run's own status; the filter printing nothing is fine
[ "${tp_rc:=0}" -eq 0 ] || echo "== throughput run failed with exit code $tp_rc (step 3 runs anyway)" >&2

echo "== 3. sd-random profile end to end"
e2e_rc=0
"$PY" benchmarks/run_stages.py --workdir "$SCRATCH/e2e" --params profiles/sd-random/params.yaml \
  --set "${E2E_SET[@]}" --out "$OUT_DIR/gpu_stages.json" || e2e_rc=$?

"$PY" - "$OUT_DIR" "$t0" "$e2e_rc" "$tp_rc" <<'PY'
import json, sys, time
from pathlib import Path
out, t0, rc, tp_rc = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
read = lambda name: json.loads((out / name).read_text()) if (out / name).exists() else None  # noqa: E731
res = {"throughput": read("gpu_throughput.json"), "throughput_rc": tp_rc, "end_to_end": read("gpu_stages.json"), "end_to_end_rc": rc,
       "wall_s": time.time() - t0}
(out / "gpu_check.json").write_text(json.dumps(res, indent=2) + "\n")
print(f"gpu_check: wrote {out / 'gpu_check.json'} ({res['wall_s']:.0f} s)")
PY
rm -rf "$SCRATCH"
[ "$tp_rc" -eq 0 ] || exit "$tp_rc"
exit "$e2e_rc"
