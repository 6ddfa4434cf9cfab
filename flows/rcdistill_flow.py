"""Prefect flow over the DVC pipeline: cache_latents -> distill -> consistency -> evaluate -> register.

Each task asks DVC to reproduce one stage (`dvc repro <stage>`), so DVC decides what is stale:
a second run with nothing changed skips every stage, a changed param reruns only what depends
on it, and a stage DVC finished stays committed in dvc.lock when a later one fails.

    python flows/rcdistill_flow.py                       # one run (ephemeral Prefect API)
    python flows/rcdistill_flow.py --steps 600 --rc-prob 0 --set distill.lr=0.002

Flow parameters override params.yaml: they are validated first (a bad value fails the run at
once, nothing written), then written into the workspace's params.yaml like `dvc exp run -S`
does, and recorded in MLflow (tags of the flow's own run and of every stage run it starts).

The parts live next to this file, in the `flows` package: dvc_pipeline (what dvc.yaml declares),
params_overrides (params.yaml), workspace_lock (one run per workspace), stage_task (the `dvc repro` task),
mlflow_run (the flow's MLflow run), summary_artifact (the artifacts), dvc_experiment (the run as a DVC
experiment). `prefect.yaml` (written by `python flows/deploy.py prefect-yaml`) deploys it with `prefect deploy`.

Bounds come from params: each stage stops after orchestration.stage_timeout_s, and no stage starts
after orchestration.flow_timeout_s. The script exits with rcd's codes: 0 done, 1 a gate said no,
2 bad input, 3 registry, 4 crash, 124 timed out.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]

# Run as a script, or loaded by path (tests, deploy.py, a Prefect deployment's entrypoint
# "flows/rcdistill_flow.py:rcdistill"), only flows/ itself is on sys.path: the repo root makes
# the `flows` package importable. Importing it first sets the offline defaults prefect needs.
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
import flows  # noqa: E402, F401

from prefect import flow, get_run_logger  # noqa: E402
from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact  # noqa: E402
from prefect.runtime import deployment as runtime_deployment  # noqa: E402
from prefect.runtime import flow_run as runtime_flow_run  # noqa: E402

from flows.dvc_experiment import experiment_name, save_experiment  # noqa: E402
from flows.dvc_pipeline import dvc_stages, flow_stages, stage_metrics  # noqa: E402
from flows.mlflow_run import FlowRun  # noqa: E402
from flows.params_overrides import apply_overrides, collect_overrides  # noqa: E402
from flows.stage_task import TIMED_OUT, StageFailed, dvc_stage, stage_env  # noqa: E402
from flows.summary_artifact import (ARTIFACT_KEY, METRICS_TABLE_KEY, MLFLOW_RUN_LINK_KEY, STAGES_TABLE_KEY,  # noqa: E402
                                    metrics_table, model_link_key, register_result, registered_versions,
                                    summary_markdown)
from flows.workspace_lock import WorkspaceBusy, ensure_global_limit, workspace_key, workspace_lock  # noqa: E402
from rcdistill.config import load_params, parse_set  # noqa: E402
from rcdistill.errors import ParamsError, RcdError, UserError  # noqa: E402
from rcdistill.tracking import flatten  # noqa: E402

# What tests, deploy.py and docs/orchestration.md take from this module.
__all__ = ["REPO", "STAGES", "ARTIFACT_KEY", "rcdistill", "main", "apply_overrides", "workspace_lock",
           "WorkspaceBusy", "FlowTimeout", "exit_code"]

TIMEOUT_EXIT_CODE = 124  # as `timeout` exits


class FlowTimeout(TimeoutError):
    """orchestration.flow_timeout_s ran out before a stage could start."""

STAGES = flow_stages()  # the flow's default: the stage table's stages from cache_latents on


@flow(name="rcdistill", description=f"DVC-driven distillation pipeline: {', '.join(STAGES)}")
def rcdistill(
    workspace: str = str(REPO),
    rc_prob: float | None = None,
    steps: int | None = None,
    student: str | None = None,
    overrides: dict[str, Any] | None = None,
    stages: list[str] = STAGES,
    consistency_rc_prob: float | None = None,
    consistency_steps: int | None = None,
    consistency_init: str | None = None,
    wait_s: float | None = None,
) -> dict[str, Any]:
    """Reproduce `stages` with DVC in `workspace`.

    rc_prob / steps / student: shorthands for distill.rc_prob / distill.steps / distill.student;
    consistency_rc_prob / consistency_steps / consistency_init: the same for the few-step stage;
    overrides: any dotted params keys, e.g. {"distill.lr": 0.002}. wait_s: how long to wait for
    another run of the same workspace to finish (None: as long as it takes).
    """
    log = get_run_logger()
    ws = Path(workspace).expanduser().resolve()
    for name in ("dvc.yaml", "params.yaml", ".dvc"):
        if not (ws / name).exists():
            raise UserError(f"{ws} is not a DVC workspace of this project: {name} is missing")
    wanted = collect_overrides(rc_prob, steps, student, overrides, consistency_rc_prob, consistency_steps,
                               consistency_init)
    p = load_params(ws / "params.yaml", wanted)  # ParamsError: one line, before anything is written
    missing = [s for s in stages if s not in dvc_stages(ws)]
    if missing:
        raise UserError(f"dvc.yaml in {ws} has no stage {', '.join(map(repr, missing))}; "
                         f"stages there: {', '.join(dvc_stages(ws))}")
    o = p.orchestration

    limit = workspace_key(ws)
    ensure_global_limit(limit)
    from prefect.concurrency.sync import concurrency

    log.info("waiting for the workspace slot %s (one pipeline per workspace)", limit)
    with concurrency(limit, occupy=1, timeout_seconds=wait_s), workspace_lock(ws, wait_s, log.info):
        p = load_params(ws / "params.yaml", wanted)  # params may have changed while we waited
        changed = apply_overrides(ws / "params.yaml", wanted)
        for k, (old, new) in changed.items():
            log.info("params.yaml: %s = %r (was %r)", k, new, old)

        fr_id = str(runtime_flow_run.id or "")
        fr_name = runtime_flow_run.name or ""
        dep = runtime_deployment.name or ""
        tags = {"stage": "prefect-flow", "prefect.flow_run_id": fr_id, "prefect.flow_run_name": fr_name,
                "prefect.deployment": dep, "rcd.overrides": json.dumps(wanted, sort_keys=True),
                "rcd.stages": ",".join(stages)}
        mlrun = FlowRun(ws, p, tags, {f"override.{k}": v for k, v in wanted.items()})
        env = stage_env({"RCD_FLOW_RUN_ID": fr_id, "RCD_FLOW_RUN_NAME": fr_name, "RCD_DEPLOYMENT": dep,
                         "RCD_OVERRIDES": json.dumps(wanted, sort_keys=True),
                         "RCD_MLFLOW_PARENT_RUN_ID": mlrun.run_id or ""})

        results: list[dict] = []
        failed: str | None = None
        deadline = time.monotonic() + o.flow_timeout_s
        try:
            for stage in stages:
                left = deadline - time.monotonic()
                run = dvc_stage.with_options(name=f"dvc repro {stage}", retries=o.retries,
                                             retry_delay_seconds=o.retry_delay_s)
                try:
                    if left <= 0:
                        raise FlowTimeout(f"orchestration.flow_timeout_s ({o.flow_timeout_s} s) ran out before "
                                          f"stage {stage!r}")
                    results.append(run(str(ws), stage, env, min(o.stage_timeout_s, left)))
                except BaseException:
                    failed = stage
                    results.append({"stage": stage, "status": "FAILED"})
                    results += [{"stage": s, "status": "not run"} for s in stages[stages.index(stage) + 1:]]
                    raise
        finally:
            metrics = stage_metrics(ws, stages)
            numeric = {k: float(v) for path, data in metrics.items() for k, v in
                       flatten(data, Path(path).stem + ".").items()
                       if isinstance(v, (int, float)) and not isinstance(v, bool)}
            experiment = None
            if failed is None:  # a finished run becomes a DVC experiment (`dvc exp show` lists it)
                experiment = experiment_name(fr_name or fr_id or "run")
                saved, said = save_experiment(ws, experiment, f"Prefect flow run {fr_name} ({fr_id})")
                if not saved:
                    log.warning("flow run not recorded as DVC experiment %s: %s", experiment, said)
                    experiment = None
            run_tags = {f"stage.{r['stage']}": r["status"] for r in results}
            if experiment:
                run_tags["dvc.experiment"] = experiment
            mlrun.finish(failed is None, run_tags, numeric)
            _artifacts(ws, p, wanted, changed, results, failed, metrics, mlrun, fr_id, experiment)
    reg = register_result(metrics)
    return {"workspace": str(ws), "overrides": wanted, "changed": sorted(changed), "stages": results,
            "mlflow_run_id": mlrun.run_id, "model_version": reg.get("version"),
            "dvc_experiment": experiment}


def _artifacts(ws, p, wanted, changed, results, failed, metrics, mlrun, fr_id, experiment) -> None:
    """The markdown summary, the stages and metrics as tables, links to the MLflow run and model versions."""
    md = summary_markdown(ws=ws, overrides=wanted, changed=changed, results=results, failed=failed,
                          metrics=metrics, mlflow_run=mlrun, stage_runs=mlrun.stage_runs(fr_id))
    if experiment:
        md += f"\nDVC experiment: `{experiment}` (`dvc exp show`, `dvc exp apply {experiment}`)\n"
    create_markdown_artifact(key=ARTIFACT_KEY, markdown=md,
                             description="rcdistill: stages, metrics, MLflow run and model version")
    create_table_artifact(key=STAGES_TABLE_KEY, description="rcdistill: each stage, its status and seconds",
                          table=[{"stage": r["stage"], "status": r["status"], "seconds": r.get("seconds")}
                                 for r in results])
    if metrics:
        create_table_artifact(key=METRICS_TABLE_KEY, table=metrics_table(metrics),
                              description="rcdistill: the stages' metrics files")
    ui = p.tracking.ui_url.rstrip("/")
    if mlrun.run_id:
        create_link_artifact(key=MLFLOW_RUN_LINK_KEY, link=f"{ui}/#/experiments/{mlrun.experiment_id}/runs/{mlrun.run_id}",
                             link_text=f"MLflow run {mlrun.run_id}", description="the flow's MLflow run (mlflow ui)")
    for model, name, version in registered_versions(metrics):
        create_link_artifact(key=model_link_key(model), link=f"{ui}/#/models/{name}/versions/{version}",
                             link_text=f"{name} version {version}", description=f"the {model} in the MLflow registry")


def exit_code(state) -> int:
    """rcd's exit codes for the flow script: the failed stage's own code (1 gate, 2 input, 3 registry),
    124 when a stage or the flow ran out of time, 4 for anything else; 0 when completed."""
    if state.is_completed():
        return 0
    err = state.result(raise_on_failure=False)
    if isinstance(err, FlowTimeout) or (isinstance(err, StageFailed) and err.reason.startswith(TIMED_OUT)):
        return TIMEOUT_EXIT_CODE
    if isinstance(err, StageFailed) and err.exit_code in (1, 2, 3):
        return err.exit_code
    if isinstance(err, RcdError):  # bad params or workspace, found before any stage ran
        return err.exit_code
    return 4


def _parse_set_or_exit(items: list[str]) -> dict:
    """A bad --set is the user's to fix: one line and exit 2, as `rcd` does."""
    try:
        return parse_set(items)
    except ParamsError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Run the rcdistill Prefect flow once (ephemeral API unless "
                                             "PREFECT_API_URL points at a server).")
    ap.add_argument("--workspace", default=str(REPO))
    ap.add_argument("--rc-prob", type=float)
    ap.add_argument("--steps", type=int)
    ap.add_argument("--student")
    ap.add_argument("--consistency-rc-prob", type=float)
    ap.add_argument("--consistency-steps", type=int)
    ap.add_argument("--consistency-init", choices=["student", "teacher"])
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="any params key, repeatable")
    ap.add_argument("--stages", nargs="+", default=STAGES)
    args = ap.parse_args(argv)
    state = rcdistill(workspace=args.workspace, rc_prob=args.rc_prob, steps=args.steps, student=args.student,
                      overrides=_parse_set_or_exit(args.set), stages=args.stages,
                      consistency_rc_prob=args.consistency_rc_prob, consistency_steps=args.consistency_steps,
                      consistency_init=args.consistency_init, return_state=True)
    print(f"flow run finished: {state.type.value}: {state.message or ''}".splitlines()[0])
    return exit_code(state)


if __name__ == "__main__":
    sys.exit(main())
