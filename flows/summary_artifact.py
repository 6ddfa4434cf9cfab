"""What each flow run leaves in Prefect: a markdown summary (overrides, stage states, MLflow runs, model
versions, metrics), the stages and the metrics as table artifacts, and links to the MLflow run and to
each registered model version."""
from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rcdistill.roster import STUDENTS
from rcdistill.tracking import flatten

if TYPE_CHECKING:
    from flows.mlflow_run import FlowRun

ARTIFACT_KEY = "rcdistill-metrics"
STAGES_TABLE_KEY = "rcdistill-stages"
METRICS_TABLE_KEY = "rcdistill-metrics-table"
MLFLOW_RUN_LINK_KEY = "rcdistill-mlflow-run"


def model_link_key(model: str) -> str:
    return f"rcdistill-model-{model.replace('_', '-')}"


def register_result(metrics: dict[str, dict]) -> dict:
    """metrics/register.json among the stages' metrics ({} when `register` has not run)."""
    reg = next((m for path, m in metrics.items() if Path(path).stem == "register"), None)
    return reg if isinstance(reg, dict) else {}


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        v = f"{v:.4g}"
    elif not isinstance(v, str):
        v = json.dumps(v)
    v = str(v).replace("|", "\\|").replace("\n", " ")
    return v if len(v) <= 120 else v[:117] + "..."


def summary_markdown(*, ws: Path, overrides: dict, changed: dict, results: list[dict], failed: str | None,
                     metrics: dict[str, dict], mlflow_run: FlowRun, stage_runs: list[tuple[str, str]]) -> str:
    md = [f"# rcdistill pipeline: {'FAILED at ' + failed if failed else 'completed'}", "",
          f"Workspace `{ws}`", ""]
    md += ["## Overrides", ""]
    if overrides:
        md += ["| key | value | changed params.yaml |", "|---|---|---|"]
        md += [f"| `{k}` | {_fmt(v)} | {'yes (was ' + _fmt(changed[k][0]) + ')' if k in changed else 'no'} |"
               for k, v in overrides.items()]
    else:
        md += ["none (params.yaml as it is)"]
    md += ["", "## Stages", "", "| stage | status | seconds |", "|---|---|---|"]
    md += [f"| {r['stage']} | {r['status']} | {r.get('seconds', '')} |" for r in results]
    md += ["", "## MLflow", "", "| what | value |", "|---|---|",
           f"| tracking URI | `{mlflow_run.uri}` |", f"| flow run id | `{mlflow_run.run_id or '-'}` |"]
    md += [f"| stage run `{name}` | `{rid}` |" for name, rid in stage_runs]
    reg = register_result(metrics)
    if reg:
        md += [f"| registered model | `{reg.get('model_name', '-')}` version **{reg.get('version', '-')}** |",
               f"| register run id | `{reg.get('run_id', '-')}` |"]
        if "champion_version" in reg:
            md += [f"| champion version | {_fmt(reg['champion_version']) if reg['champion_version'] is not None else '-'} |",
                   f"| promoted | {_fmt(reg.get('promoted', '-'))} |", f"| gate | {_fmt(reg.get('reason', '-'))} |"]
        for m in STUDENTS[1:]:
            other = reg.get(m.name)
            if isinstance(other, dict):
                md += [f"| {m.name} model | `{other.get('model_name', '-')}` version **{other.get('version', '-')}**, "
                       f"champion v{_fmt(other.get('champion_version'))} |",
                       f"| {m.name} gate | {_fmt(other.get('reason', '-'))} |"]
    md += ["", "## Metrics", ""]
    if not metrics:
        md += ["no metrics file yet"]
    for path, data in metrics.items():
        md += [f"### `{path}`", "", "| metric | value |", "|---|---|"]
        md += [f"| {k} | {_fmt(v)} |" for k, v in flatten(data).items()]
        md += [""]
    return "\n".join(md) + "\n"

def metrics_table(metrics: dict[str, dict]) -> list[dict[str, Any]]:
    """One row per metric: its file, its dotted name and value (numbers stay numbers)."""
    return [{"file": path, "metric": k, "value": v if isinstance(v, (int, float, str, bool)) or v is None else json.dumps(v)}
            for path, data in metrics.items() for k, v in flatten(data).items()]


def registered_versions(metrics: dict[str, dict]) -> list[tuple[str, str, int]]:
    """(roster name, registered model name, version) of every student register.json names."""
    reg = register_result(metrics)
    if not reg:
        return []
    rows = [(STUDENTS[0].name, reg.get("model_name"), reg.get("version"))]
    rows += [(m.name, reg[m.name].get("model_name"), reg[m.name].get("version"))
             for m in STUDENTS[1:] if isinstance(reg.get(m.name), dict)]
    return [r for r in rows if r[1] and r[2] is not None]
