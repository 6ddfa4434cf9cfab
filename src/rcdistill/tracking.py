"""MLflow tracking: one run per stage, in the sqlite store inside mlruns/."""
from __future__ import annotations

import subprocess
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from .config import Params


def flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def setup_mlflow(params: Params):
    import mlflow

    Path("mlruns").mkdir(exist_ok=True)
    mlflow.set_tracking_uri(params.tracking.uri)
    name = params.tracking.experiment
    if mlflow.get_experiment_by_name(name) is None:
        mlflow.create_experiment(name, artifact_location=Path(params.tracking.artifacts).resolve().as_uri())
    mlflow.set_experiment(name)
    return mlflow


class RunLogger:
    """Thin wrapper so training loops log metrics without knowing about MLflow."""

    def __init__(self, mlflow):
        self.mlflow = mlflow

    def __call__(self, metrics: dict[str, float], step: int | None = None) -> None:
        self.mlflow.log_metrics({k.replace("/", "."): float(v) for k, v in metrics.items()}, step=step)

    def image(self, image, name: str) -> None:
        self.mlflow.log_image(image, name)

    def artifact(self, path: str | Path, folder: str | None = None) -> None:
        self.mlflow.log_artifact(str(path), folder)


@contextmanager
def stage_run(params: Params, stage: str, sections: tuple[str, ...]) -> Iterator[RunLogger]:
    mlflow = setup_mlflow(params)
    with mlflow.start_run(run_name=stage):
        mlflow.set_tags({"stage": stage, "git_commit": git_commit()})
        dumped = params.model_dump()
        mlflow.log_params(flatten({s: dumped[s] for s in sections}))
        yield RunLogger(mlflow)
