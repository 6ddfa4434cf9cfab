"""Prefect orchestration of the DVC pipeline; `rcdistill_flow.py` is the flow, `deploy.py` its deployment.

Importing any module of this package first makes the process offline and keeps Prefect's state inside
the project (scripts/env.sh does the same): these defaults must be set before prefect is imported.
"""
import os
from pathlib import Path

os.environ.setdefault("PREFECT_HOME", str(Path(__file__).resolve().parents[1] / ".prefect"))
for _k, _v in {"PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DVC_NO_ANALYTICS": "1",
               "MLFLOW_DISABLE_TELEMETRY": "true", "HF_HUB_OFFLINE": "1", "DO_NOT_TRACK": "1"}.items():
    os.environ.setdefault(_k, _v)
