"""Prefect flow over the DVC pipeline: cache_latents -> distill -> consistency -> evaluate -> register.

Each task asks DVC to reproduce one stage (`dvc repro <stage>`), so DVC decides what is stale:
a second run with nothing changed skips every stage, a changed param reruns only what depends
on it, and a stage DVC finished stays committed in dvc.lock when a later one fails.

    python flows/rcdistill_flow.py                       # one run (ephemeral Prefect API)
    python flows/rcdistill_flow.py --steps 600 --rc-prob 0 --set distill.lr=0.002

Flow parameters override params.yaml: they are validated first (a bad value fails the run at
once, nothing written), then written into the workspace's params.yaml like `dvc exp run -S`
does, and recorded in MLflow (tags of the flow's own run and of every stage run it starts).
"""
from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import re
import subprocess
import sys
import time
from collections import deque
from pathlib import Path
from typing import Any, Iterator

REPO = Path(__file__).resolve().parents[1]

# Offline and state inside the project, before prefect is imported (scripts/env.sh does the same).
os.environ.setdefault("PREFECT_HOME", str(REPO / ".prefect"))
for _k, _v in {"PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DVC_NO_ANALYTICS": "1",
               "MLFLOW_DISABLE_TELEMETRY": "true", "HF_HUB_OFFLINE": "1", "DO_NOT_TRACK": "1"}.items():
    os.environ.setdefault(_k, _v)

import yaml  # noqa: E402
from prefect import flow, get_run_logger, task  # noqa: E402
from prefect.artifacts import create_markdown_artifact  # noqa: E402
from prefect.cache_policies import NO_CACHE  # noqa: E402
from prefect.runtime import deployment as runtime_deployment  # noqa: E402
from prefect.runtime import flow_run as runtime_flow_run  # noqa: E402

from rcdistill.config import Params, load_params  # noqa: E402
from rcdistill.tracking import flatten  # noqa: E402

STAGES = ["cache_latents", "distill", "consistency", "evaluate", "register"]
PERMANENT_EXIT_CODES = {1: "quality gate failed", 2: "user error (params or input)"}
ARTIFACT_KEY = "rcdistill-metrics"
TAIL_LINES = 40
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_PROGRESS = re.compile(r"\d+%\|")


class StageFailed(Exception):
    """`dvc repro <stage>` failed; the message carries the tail of the stage's output."""

    def __init__(self, stage: str, exit_code: int | None, tail: str, transient: bool, reason: str):
        super().__init__(stage, exit_code, tail, transient, reason)
        self.stage, self.exit_code, self.tail, self.transient, self.reason = stage, exit_code, tail, transient, reason

    def __str__(self) -> str:
        code = "" if self.exit_code is None else f"exit code {self.exit_code}, "
        retry = "transient, retried" if self.transient else "not retried"
        return f"stage '{self.stage}' failed ({code}{self.reason}; {retry}); last output:\n{self.tail}"


def classify_failure(exit_code: int | None, tail: str, dvc_rc: int) -> tuple[bool, str]:
    """(transient, reason). rcd's own one-line errors (exit 2: user error, 1: quality gate) and DVC's
    refusals are permanent; crashes, kills and a busy DVC lock are worth a retry."""
    rcd_error = any(line.startswith("error: ") for line in tail.splitlines())
    if exit_code is None:
        if "unable to acquire lock" in tail.lower():
            return True, "DVC lock busy"
        if "ERROR" in tail:
            return False, "DVC refused the stage"
        return True, f"dvc exited with {dvc_rc} without an error message"
    if exit_code in PERMANENT_EXIT_CODES and rcd_error:
        return False, PERMANENT_EXIT_CODES[exit_code]
    if exit_code < 0 or exit_code > 128:
        return True, "killed by a signal"
    return True, "crashed" if "Traceback" in tail else "failed"


class WorkspaceBusy(TimeoutError):
    pass


# ---------------------------------------------------------------- params and overrides

def collect_overrides(rc_prob: float | None, steps: int | None, student: str | None,
                      overrides: dict[str, Any] | None, consistency_rc_prob: float | None = None,
                      consistency_steps: int | None = None, consistency_init: str | None = None) -> dict[str, Any]:
    out = dict(overrides or {})
    for key, value in {"distill.rc_prob": rc_prob, "distill.steps": steps, "distill.student": student,
                       "consistency.rc_prob": consistency_rc_prob, "consistency.steps": consistency_steps,
                       "consistency.init": consistency_init}.items():
        if value is not None:
            out[key] = value
    return out


def _get(data: dict, dotted: str) -> Any:
    node: Any = data
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return KeyError
        node = node[part]
    return node


def _set(data: dict, dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    for p in parents:
        data = data.setdefault(p, {})
    data[leaf] = value


_SCALAR = re.compile(r"\"(?:[^\"\\]|\\.)*\"|'(?:[^']|'')*'|[^,}\]#\n]*?(?=\s*(?:#|,|\}|\]|$))")


def _edit_in_place(text: str, changes: dict[str, Any]) -> str | None:
    """Replace each changed scalar where it stands (comments and layout untouched); None if unsure."""
    from ruamel.yaml import YAML

    doc = YAML().load(text)
    lines = text.splitlines(keepends=True)
    spots = []
    for dotted, value in changes.items():
        *parents, leaf = dotted.split(".")
        node = doc
        for p in parents:
            node = node.get(p) if hasattr(node, "get") else None
            if node is None:
                return None
        if not hasattr(node, "lc") or leaf not in node or isinstance(node[leaf], (dict, list)):
            return None
        line, col = node.lc.value(leaf)
        spots.append((line, col, json.dumps(value)))
    for line, col, new in sorted(spots, reverse=True):
        m = _SCALAR.match(lines[line], col)
        if m is None or m.end() == col:
            return None
        lines[line] = lines[line][:col] + new + lines[line][m.end():]
    return "".join(lines)


def apply_overrides(params_path: Path, overrides: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Write the overrides into params.yaml atomically; return {key: (old, new)} of what changed."""
    text = params_path.read_text()
    data = yaml.safe_load(text) or {}
    changes = {k: v for k, v in overrides.items() if _get(data, k) != v}
    if not changes:
        return {}
    expected = yaml.safe_load(text) or {}
    for k, v in changes.items():
        _set(expected, k, v)
    new_text = _edit_in_place(text, changes)
    if new_text is None or yaml.safe_load(new_text) != expected:
        import io

        from ruamel.yaml import YAML  # keeps comments; may re-wrap long flow mappings
        ry = YAML()
        ry.preserve_quotes = True
        ry.width = 4096
        doc = ry.load(text)
        for k, v in changes.items():
            _set(doc, k, v)
        buf = io.StringIO()
        ry.dump(doc, buf)
        new_text = buf.getvalue()
        if yaml.safe_load(new_text) != expected:
            raise RuntimeError(f"could not write overrides into {params_path} faithfully")
    tmp = params_path.with_name(f".{params_path.name}.{os.getpid()}.tmp")
    tmp.write_text(new_text)
    os.replace(tmp, params_path)
    return {k: (None if _get(data, k) is KeyError else _get(data, k), v) for k, v in changes.items()}


# ---------------------------------------------------------------- one pipeline per workspace

def workspace_key(ws: Path) -> str:
    return "rcdistill-workspace-" + hashlib.sha1(str(ws).encode()).hexdigest()[:12]


@contextlib.contextmanager
def workspace_lock(ws: Path, timeout_s: float | None = None, log=None) -> Iterator[None]:
    """An exclusive file lock in the workspace's .dvc/tmp: one flow run per workspace on this host,
    whatever Prefect API the runs talk to. Released by the OS if the process dies."""
    path = ws / ".dvc" / "tmp" / "rcdistill-flow.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        start = time.monotonic()
        waited = False
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not waited and log:
                    fh.seek(0)
                    log(f"another pipeline run holds {path} ({fh.read().strip() or 'unknown'}); waiting")
                waited = True
                if timeout_s is not None and time.monotonic() - start > timeout_s:
                    raise WorkspaceBusy(f"workspace {ws} is busy with another pipeline run "
                                        f"(lock {path}, waited {timeout_s:.0f} s)") from None
                time.sleep(1.0)
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()} flow run {runtime_flow_run.id or '-'}\n")
        fh.flush()
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def ensure_global_limit(name: str) -> None:
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            client.read_global_concurrency_limit_by_name(name)
        except ObjectNotFound:
            from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate

            with contextlib.suppress(Exception):  # a concurrent run created it first
                client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=1))


# ---------------------------------------------------------------- DVC stages

def stage_env(extra: dict[str, str]) -> dict[str, str]:
    env = dict(os.environ)
    venv_bin = str(Path(sys.executable).parent)
    if venv_bin not in env.get("PATH", "").split(os.pathsep):  # `rcd` of this environment
        env["PATH"] = venv_bin + os.pathsep + env.get("PATH", "")
    env.update({"PYTHONUNBUFFERED": "1", "TQDM_MININTERVAL": "5"})
    env.update(extra)
    return env


def _retry_transient(task, task_run, state) -> bool:
    exc = state.data if isinstance(state.data, BaseException) else state.result(raise_on_failure=False)
    return not isinstance(exc, StageFailed) or exc.transient


@task(name="dvc-repro", cache_policy=NO_CACHE, persist_result=False, retry_condition_fn=_retry_transient)
def dvc_stage(workspace: str, stage: str, env: dict[str, str]) -> dict[str, Any]:
    """`dvc repro <stage>` (DVC reruns stale upstream stages itself); output into the run logger."""
    log = get_run_logger()
    cmd = [sys.executable, "-m", "dvc", "repro", stage]
    log.info("$ dvc repro %s   (in %s)", stage, workspace)
    tail: deque[str] = deque(maxlen=TAIL_LINES)
    ran: list[str] = []
    start = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=workspace, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, errors="replace", bufsize=1)
    try:
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = _ANSI.sub("", raw.rstrip("\n").split("\r")[-1]).rstrip()  # progress bars: last update
            if not line:
                continue
            if not _PROGRESS.search(line):
                tail.append(line)
            m = re.search(r"Running stage '([^']+)'", line)
            if m:
                ran.append(m.group(1))
            (log.error if line.startswith("ERROR") else log.info)("[%s] %s", stage, line)
        rc = proc.wait()
    finally:
        if proc.poll() is None:  # the flow was cancelled or crashed: do not leave DVC running
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
    seconds = time.monotonic() - start
    if rc != 0:
        text = "\n".join(tail)
        m = re.findall(r"exited with (-?\d+)", text)
        code = int(m[-1]) if m else None
        raise StageFailed(stage, code, text, *classify_failure(code, text, rc))
    status = "ran" if stage in ran else "up to date"
    log.info("stage %s: %s in %.1f s%s", stage, status, seconds,
             f" (also reproduced: {', '.join(s for s in ran if s != stage)})" if set(ran) - {stage} else "")
    return {"stage": stage, "status": status, "seconds": round(seconds, 1), "reproduced": ran}


# ---------------------------------------------------------------- metrics, MLflow, artifact

def dvc_stages(ws: Path) -> dict[str, dict]:
    return (yaml.safe_load((ws / "dvc.yaml").read_text()) or {}).get("stages", {})


def stage_metrics(ws: Path, stages: list[str]) -> dict[str, dict]:
    """The metrics files each stage declares in dvc.yaml, read as JSON (missing ones skipped)."""
    out: dict[str, dict] = {}
    defs = dvc_stages(ws)
    for stage in stages:
        for entry in defs.get(stage, {}).get("metrics", []) or []:
            rel = entry if isinstance(entry, str) else next(iter(entry))
            path = ws / rel
            if path.suffix == ".json" and path.exists():
                with contextlib.suppress(ValueError):
                    out[rel] = json.loads(path.read_text())
    return out


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        v = f"{v:.4g}"
    elif not isinstance(v, str):
        v = json.dumps(v)
    v = str(v).replace("|", "\\|").replace("\n", " ")
    return v if len(v) <= 120 else v[:117] + "..."


def tracking_uri(ws: Path, p: Params) -> str:
    uri = p.tracking.uri
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        return "sqlite:///" + str(ws / uri[len("sqlite:///"):])
    if "://" not in uri:
        return str(ws / uri)
    return uri


class FlowRun:
    """The flow's own MLflow run (parent of the stage runs it starts); MLflow trouble never fails the flow."""

    def __init__(self, ws: Path, p: Params, tags: dict[str, str], params: dict[str, Any]):
        self.client = self.run_id = None
        self.uri = tracking_uri(ws, p)
        try:
            from mlflow import MlflowClient

            (ws / "mlruns").mkdir(exist_ok=True)
            self.client = MlflowClient(tracking_uri=self.uri)
            exp = self.client.get_experiment_by_name(p.tracking.experiment)
            if exp is None:
                exp_id = self.client.create_experiment(
                    p.tracking.experiment, artifact_location=(ws / p.tracking.artifacts).resolve().as_uri())
            else:
                exp_id = exp.experiment_id
            self.experiment_id = exp_id
            run = self.client.create_run(exp_id, run_name="prefect-flow", tags=tags)
            self.run_id = run.info.run_id
            for k, v in params.items():
                self.client.log_param(self.run_id, k, json.dumps(v) if not isinstance(v, str) else v)
        except Exception as err:  # noqa: BLE001
            get_run_logger().warning("MLflow flow run not recorded: %s", err)
            self.client = None

    def stage_runs(self, flow_run_id: str) -> list[tuple[str, str]]:
        if not self.client:
            return []
        with contextlib.suppress(Exception):
            runs = self.client.search_runs([self.experiment_id],
                                           f"tags.`prefect.flow_run_id` = '{flow_run_id}'",
                                           order_by=["attributes.start_time ASC"])
            return [(r.info.run_name, r.info.run_id) for r in runs if r.info.run_id != self.run_id]
        return []

    def finish(self, ok: bool, tags: dict[str, str], metrics: dict[str, float]) -> None:
        if not self.client:
            return
        with contextlib.suppress(Exception):
            for k, v in tags.items():
                self.client.set_tag(self.run_id, k, v)
            for k, v in metrics.items():
                self.client.log_metric(self.run_id, k, v)
            self.client.set_terminated(self.run_id, "FINISHED" if ok else "FAILED")


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
    reg = next((m for path, m in metrics.items() if Path(path).stem == "register"), None)
    if isinstance(reg, dict):
        md += [f"| registered model | `{reg.get('model_name', '-')}` version **{reg.get('version', '-')}** |",
               f"| register run id | `{reg.get('run_id', '-')}` |"]
        if "champion_version" in reg:
            md += [f"| champion version | {_fmt(reg['champion_version']) if reg['champion_version'] is not None else '-'} |",
                   f"| promoted | {_fmt(reg.get('promoted', '-'))} |", f"| gate | {_fmt(reg.get('reason', '-'))} |"]
        fast = reg.get("student_fast")
        if isinstance(fast, dict):
            md += [f"| few-step model | `{fast.get('model_name', '-')}` version **{fast.get('version', '-')}**, "
                   f"champion v{_fmt(fast.get('champion_version'))} |", f"| few-step gate | {_fmt(fast.get('reason', '-'))} |"]
    md += ["", "## Metrics", ""]
    if not metrics:
        md += ["no metrics file yet"]
    for path, data in metrics.items():
        md += [f"### `{path}`", "", "| metric | value |", "|---|---|"]
        md += [f"| {k} | {_fmt(v)} |" for k, v in flatten(data).items()]
        md += [""]
    return "\n".join(md) + "\n"


# ---------------------------------------------------------------- the flow

@flow(name="rcdistill",
      description="DVC-driven distillation pipeline: cache_latents, distill, consistency, evaluate, register")
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
            raise FileNotFoundError(f"{ws} is not a DVC workspace of this project: {name} is missing")
    wanted = collect_overrides(rc_prob, steps, student, overrides, consistency_rc_prob, consistency_steps,
                               consistency_init)
    p = load_params(ws / "params.yaml", wanted)  # ParamsError: one line, before anything is written
    missing = [s for s in stages if s not in dvc_stages(ws)]
    if missing:
        raise ValueError(f"dvc.yaml in {ws} has no stage {', '.join(map(repr, missing))}; "
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
        try:
            for stage in stages:
                run = dvc_stage.with_options(name=f"dvc repro {stage}", retries=o.retries,
                                             retry_delay_seconds=o.retry_delay_s)
                try:
                    results.append(run(str(ws), stage, env))
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
            mlrun.finish(failed is None, {f"stage.{r['stage']}": r["status"] for r in results}, numeric)
            md = summary_markdown(ws=ws, overrides=wanted, changed=changed, results=results, failed=failed,
                                  metrics=metrics, mlflow_run=mlrun, stage_runs=mlrun.stage_runs(fr_id))
            create_markdown_artifact(key=ARTIFACT_KEY, markdown=md,
                                     description="rcdistill: stages, metrics, MLflow run and model version")
    reg = next((m for path, m in metrics.items() if Path(path).stem == "register"), {})
    return {"workspace": str(ws), "overrides": wanted, "changed": sorted(changed), "stages": results,
            "mlflow_run_id": mlrun.run_id, "model_version": reg.get("version") if isinstance(reg, dict) else None}


def _parse_set(items: list[str]) -> dict[str, Any]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--set {item!r}: expected key=value")
        out[key] = yaml.safe_load(value)
    return out


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
                      overrides=_parse_set(args.set), stages=args.stages,
                      consistency_rc_prob=args.consistency_rc_prob, consistency_steps=args.consistency_steps,
                      consistency_init=args.consistency_init, return_state=True)
    print(f"flow run finished: {state.type.value}: {state.message or ''}".splitlines()[0])
    return 0 if state.is_completed() else 1


if __name__ == "__main__":
    sys.exit(main())
