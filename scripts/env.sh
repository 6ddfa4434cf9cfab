# Sourced by the entry scripts: offline, no telemetry, state kept inside the project.
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1
export DVC_NO_ANALYTICS=1 MLFLOW_DISABLE_TELEMETRY=true DO_NOT_TRACK=1
export PREFECT_SERVER_ANALYTICS_ENABLED=false
export PREFECT_HOME="${PREFECT_HOME:-$PWD/.prefect}"
export TOKENIZERS_PARALLELISM=false
export PATH="$PWD/${RCD_VENV:-.venv}/bin:$PATH"
# OpenMP threads sleep instead of spinning while they wait: with other work on the cores (tests,
# a server) spinning made distillation 40x slower here (18.6 vs 0.42 s/step on 2 cores).
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"
