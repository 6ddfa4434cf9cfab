# Sourced by the entry scripts: offline, no telemetry, state kept inside the project.
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1
export DVC_NO_ANALYTICS=1 MLFLOW_DISABLE_TELEMETRY=true DO_NOT_TRACK=1
export PREFECT_SERVER_ANALYTICS_ENABLED=false
export PREFECT_HOME="${PREFECT_HOME:-$PWD/.prefect}"
export TOKENIZERS_PARALLELISM=false
export PATH="$PWD/${RCD_VENV:-.venv}/bin:$PATH"
# Every stage, dvc and rcd call is a fresh Python process: without cached bytecode each one compiles
# every module it imports again (about half of a stage's 5 s start-up). uv installs no .pyc files,
# so Python must be allowed to write them on first import (into the project's own .venv and src/).
unset PYTHONDONTWRITEBYTECODE
