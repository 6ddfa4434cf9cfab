#!/usr/bin/env bash
# Main job: set up (idempotent), then reproduce the default DVC pipeline. Extra args go to `dvc repro`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source scripts/env.sh
dvc repro "$@"
echo
echo "results:"
echo "  metrics        : metrics/*.json (dvc metrics show), plots/ (dvc plots show)"
echo "  teacher        : models/teacher/  (StableDiffusionPipeline folder; samples.png inside)"
echo "  student        : models/student/  (distilled StableDiffusionPipeline; samples.png inside)"
echo "  few-step       : models/student_fast/  (LCMScheduler, 4 steps, no CFG pass; samples.png inside)"
echo "  one-step BOOT  : models/student_boot/  (from noise and texts alone, 1 step, no CFG pass; samples.png inside)"
echo "  image-conditioned: models/codi/, models/codi_adapter/  (CoDi, edge map + caption -> image in 4 steps; rcd sample --condition)"
echo "  latent cache   : data/latents/    (shards + manifest.json); conditions: data/conditions/"
echo "  sample grids   : reports/grid_seen.png, reports/grid_unseen.png (rows: teacher, student, few-step, one-step BOOT)"
echo "  evaluators     : models/evaluators/"
echo "  prompt pools   : data/prompts/"
echo "  MLflow         : mlruns/mlflow.db, runs and the model registry (browse: .venv/bin/mlflow ui --backend-store-uri sqlite:///mlruns/mlflow.db)"
echo
rcd summary
