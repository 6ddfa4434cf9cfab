"""MLflow tracking: one run per stage, in the sqlite store inside mlruns/."""
from __future__ import annotations

import json
import os
import subprocess
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from .config import Params
from .run_inputs import log_stage_inputs


def flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts to dotted keys; a non-dict value at the top becomes one entry named by the prefix."""
    if not isinstance(d, dict):
        return {prefix.rstrip("."): d}
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


def resolved_uri(uri: str, base: Path | None = None) -> str:
    """A relative sqlite or file store made absolute against `base` (default: the working folder).
    MLflow caches one store per URI in a process, so a relative one would follow the process to
    whatever folder it works in next."""
    base = (base or Path.cwd()).resolve()
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        return "sqlite:///" + str(base / uri[len("sqlite:///"):])
    if "://" not in uri:
        return str(base / uri)
    return uri


def setup_mlflow(params: Params):
    import mlflow

    Path("mlruns").mkdir(exist_ok=True)
    mlflow.set_tracking_uri(resolved_uri(params.tracking.uri))
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


# Set by the Prefect flow (flows/rcdistill_flow.py) for the stages it starts: env var -> run tag.
FLOW_TAG_ENV = {
    "RCD_FLOW_RUN_ID": "prefect.flow_run_id",
    "RCD_FLOW_RUN_NAME": "prefect.flow_run_name",
    "RCD_DEPLOYMENT": "prefect.deployment",
    "RCD_OVERRIDES": "rcd.overrides",
}
PARENT_RUN_ENV = "RCD_MLFLOW_PARENT_RUN_ID"  # the flow's MLflow run: stage runs nest under it


def flow_tags() -> dict[str, str]:
    """Tags naming the orchestrating flow run and its params overrides (empty outside a flow)."""
    return {tag: os.environ[env] for env, tag in FLOW_TAG_ENV.items() if os.environ.get(env)}


def flow_override_params() -> dict[str, str]:
    """The flow's overrides as `override.<key>` params (the effective values are logged anyway)."""
    try:
        overrides = json.loads(os.environ.get("RCD_OVERRIDES") or "{}")
    except ValueError:
        return {}
    return {f"override.{k}": json.dumps(v) for k, v in overrides.items()} if isinstance(overrides, dict) else {}


@contextmanager
def stage_run(params: Params, stage: str, sections: tuple[str, ...]) -> Iterator[RunLogger]:
    """One MLflow run for the stage: its params sections, tags, input datasets; nested under the
    Prefect flow's run when a flow started the stage."""
    mlflow = setup_mlflow(params)
    with mlflow.start_run(run_name=stage, parent_run_id=os.environ.get(PARENT_RUN_ENV) or None):
        mlflow.set_tags({"stage": stage, "git_commit": git_commit(), **flow_tags()})
        log_stage_inputs(mlflow, params, stage)
        mlflow.log_params(flatten({s: getattr(params, s).model_dump() for s in sections}))
        if flow_override_params():
            mlflow.log_params(flow_override_params())
        yield RunLogger(mlflow)
