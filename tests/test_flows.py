"""Prefect orchestration (flows/): the flow over the DVC pipeline, failures, the served deployment."""
from __future__ import annotations

import atexit
import hashlib
import inspect
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from conftest import REPO, make_project

# Prefect state of these tests lives in a temp dir, never in the project's .prefect/.
_PREFECT_HOME = tempfile.mkdtemp(prefix="rcd-prefect-")
atexit.register(shutil.rmtree, _PREFECT_HOME, True)
os.environ["PREFECT_HOME"] = _PREFECT_HOME
os.environ.pop("PREFECT_API_URL", None)
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
sys.path.insert(0, str(REPO / "flows"))

from prefect.settings import PREFECT_API_URL, PREFECT_HOME, temporary_settings  # noqa: E402

import rcdistill_flow as rf  # noqa: E402

VENV_BIN = str(Path(sys.executable).parent)
FLOW_STAGES = rf.STAGES


@pytest.fixture(autouse=True)
def _ephemeral_prefect():
    with temporary_settings(updates={PREFECT_HOME: _PREFECT_HOME}, restore_defaults={PREFECT_API_URL}):
        yield


@pytest.fixture(scope="module", autouse=True)
def _stop_ephemeral_server():
    """Stop the ephemeral API while pytest still captures output (else its atexit log line errors)."""
    yield
    try:
        from prefect.logging.handlers import APILogWorker
        from prefect.server.api.server import SubprocessASGIServer

        APILogWorker.drain_all(timeout=30)  # send queued run logs while the API is still up

        for server in list(SubprocessASGIServer._instances.values()):
            server.stop()
    except Exception:  # noqa: BLE001  (private API; only tidiness depends on it)
        pass


def fake_rcd(folder: Path, stage: str, mode: str) -> Path:
    """A `rcd` ahead of the real one on PATH that fails `stage`: mode user (exit 2, rcd's error line),
    transient (exit 75 the first time), crash (exit 75 every time), hang (sleeps; writes its pid)."""
    folder.mkdir(parents=True, exist_ok=True)
    mark = folder / "failed-once"
    mark.unlink(missing_ok=True)
    script = folder / "rcd"
    script.write_text(f"""#!/bin/sh
if [ "$1" = "{stage}" ]; then
  case "{mode}" in
    user) echo "error: simulated bad input for {stage}" >&2; exit 2 ;;
    crash) echo "simulated crash in {stage}" >&2; exit 75 ;;
    transient) if [ ! -e "{mark}" ]; then touch "{mark}"; echo "simulated transient failure" >&2; exit 75; fi ;;
    hang) echo $$ > "{folder}/hang.pid"; echo "hanging in {stage}"; sleep 600 ;;
  esac
fi
exec "{VENV_BIN}/rcd" "$@"
""")
    script.chmod(0o755)
    return folder


def run_flow(ws: Path, **kw):
    kw.setdefault("stages", FLOW_STAGES)
    t = time.monotonic()
    state = rf.rcdistill(workspace=str(ws), return_state=True, **kw)
    return state, time.monotonic() - t


def flow_run_id(state) -> str:
    return str(state.state_details.flow_run_id)


def task_runs(state) -> dict[str, object]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[state.state_details.flow_run_id])))
    return {r.name.rsplit("-", 1)[0]: r for r in runs}


def artifact_md(flow_run: str, api_url: str | None = None) -> str:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        arts = client.read_artifacts(artifact_filter=ArtifactFilter(
            key=ArtifactFilterKey(any_=[rf.ARTIFACT_KEY]), flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run])))
    assert len(arts) == 1, f"expected one {rf.ARTIFACT_KEY} artifact of flow run {flow_run}, got {len(arts)}"
    assert arts[0].type == "markdown"
    return arts[0].data


def artifacts_of(flow_run: str) -> dict[str, object]:
    """Every keyed artifact the flow run left, by key."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with get_client(sync_client=True) as client:
        arts = client.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run])))
    return {a.key: a for a in arts if a.key}


def mlflow_runs(ws: Path, flow_run: str) -> dict[str, object]:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{ws / 'mlruns' / 'mlflow.db'}")
    exp = client.get_experiment_by_name("rcdistill")
    runs = client.search_runs([exp.experiment_id], f"tags.`prefect.flow_run_id` = '{flow_run}'")
    return {r.info.run_name: r for r in runs}


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def dvc(ws: Path, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dvc", *args], cwd=ws, capture_output=True, text=True)


# ---------------------------------------------------------------- fast: no pipeline work

def test_bad_override_fails_at_once_and_writes_nothing(tmp_path):
    ws = make_project(tmp_path / "ws")
    before = (ws / "params.yaml").read_bytes()
    state, _ = run_flow(ws, rc_prob=1.5, steps=2)
    assert state.is_failed()
    assert "distill.rc_prob" in state.message and "1.5" in state.message
    state, _ = run_flow(ws, overrides={"distill.no_such_key": 1})
    assert state.is_failed() and "unknown key 'distill.no_such_key'" in state.message
    assert (ws / "params.yaml").read_bytes() == before
    assert not (ws / "dvc.lock").exists() and not (ws / "data").exists() and not (ws / "mlruns").exists()


def test_flow_stages_come_from_the_stage_table():
    """The flow's stages are the stage table's from cache_latents on, in the order dvc.yaml lists them."""
    from rcdistill.stage_table import STAGES

    names = list(yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"])
    assert names == [s.name for s in STAGES]
    assert FLOW_STAGES == names[names.index("cache_latents"):]
    assert FLOW_STAGES[0] == "cache_latents" and FLOW_STAGES[-1] == names[-1] and "teacher" not in FLOW_STAGES
    assert inspect.signature(rf.rcdistill.fn).parameters["stages"].default == FLOW_STAGES


def test_flow_loads_as_a_script_and_as_a_deployment_entrypoint(tmp_path):
    """`python flows/rcdistill_flow.py` and Prefect's entrypoint loader find the flows package from any cwd."""
    env = {**os.environ, "PREFECT_HOME": _PREFECT_HOME}
    out = subprocess.run([sys.executable, str(REPO / "flows" / "rcdistill_flow.py"), "--help"], cwd=tmp_path,
                         env=env, capture_output=True, text=True)
    assert out.returncode == 0 and "--consistency-rc-prob" in out.stdout, out.stderr[-3000:]
    code = ("import inspect, json\nfrom prefect.flows import load_flow_from_entrypoint\n"
            f"f = load_flow_from_entrypoint({str(REPO / 'flows' / 'rcdistill_flow.py') + ':rcdistill'!r})\n"
            "print(f.name, json.dumps(inspect.signature(f.fn).parameters['stages'].default))")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    name, stages = out.stdout.strip().splitlines()[-1].split(" ", 1)
    assert name == "rcdistill" and json.loads(stages) == FLOW_STAGES, out.stdout


def test_overrides_are_written_in_place_keeping_comments(tmp_path):
    params = tmp_path / "params.yaml"
    shutil.copy(REPO / "params.yaml", params)
    before = params.read_text()
    changed = rf.apply_overrides(params, {"distill.rc_prob": 0, "distill.student": "bk_tiny",
                                         "teacher.vae.steps": 7, "distill.seed": 4})
    after = params.read_text()
    assert set(changed) == {"distill.rc_prob", "distill.student", "teacher.vae.steps"}  # seed unchanged
    data = yaml.safe_load(after)
    assert data["distill"]["rc_prob"] == 0 and data["distill"]["student"] == "bk_tiny"
    assert data["teacher"]["vae"]["steps"] == 7
    diff = [(a, b) for a, b in zip(before.splitlines(), after.splitlines()) if a != b]
    assert len(before.splitlines()) == len(after.splitlines()) and len(diff) == 3, diff
    assert all("#" in b for a, b in diff if "#" in a), "a comment on an edited line was lost"


def test_one_pipeline_per_workspace_lock(tmp_path):
    (tmp_path / ".dvc").mkdir()
    with rf.workspace_lock(tmp_path, timeout_s=1):
        t = time.monotonic()
        code = ("import sys; sys.path.insert(0, %r); import rcdistill_flow as rf, pathlib\n"
                "try:\n  rf.workspace_lock(pathlib.Path(%r), timeout_s=1.5).__enter__(); print('GOT')\n"
                "except rf.WorkspaceBusy as e: print('BUSY', e)") % (str(REPO / "flows"), str(tmp_path))
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             env={**os.environ, "PREFECT_HOME": _PREFECT_HOME}).stdout
        assert out.startswith("BUSY") and "busy with another pipeline run" in out, out
        assert time.monotonic() - t >= 1.5
    with rf.workspace_lock(tmp_path, timeout_s=0):  # released
        pass


def test_stage_failure_fails_the_flow_with_its_error(tmp_path, monkeypatch):
    """The first stage DVC runs (prompts, upstream of cache_latents) fails: the flow fails with that
    stage's stderr; rcd's user error (exit 2) is not retried, a crash is retried (retries: 1)."""
    ws = make_project(tmp_path / "ws")
    monkeypatch.setenv("PATH", f"{fake_rcd(tmp_path / 'bin', 'prompts', 'user')}{os.pathsep}{VENV_BIN}"
                               f"{os.pathsep}{os.environ['PATH']}")
    state, _ = run_flow(ws)
    assert state.is_failed()
    assert "stage 'cache_latents' failed" in state.message
    assert "error: simulated bad input for prompts" in state.message and "exit code 2" in state.message
    assert task_runs(state)["dvc repro cache_latents"].run_count == 1  # user error: no retry
    assert "FAILED at cache_latents" in artifact_md(flow_run_id(state))
    assert not (ws / "data" / "prompts").exists()
    assert rf.exit_code(state) == 2  # the flow script exits as rcd did

    fake_rcd(tmp_path / "bin", "prompts", "crash")
    state, _ = run_flow(ws)
    assert state.is_failed() and "simulated crash in prompts" in state.message and "exit code 75" in state.message
    assert task_runs(state)["dvc repro cache_latents"].run_count == 2  # transient: retried once


def test_hung_stage_is_stopped_after_its_timeout(tmp_path, monkeypatch):
    """orchestration.stage_timeout_s bounds `dvc repro <stage>`: the stage command is killed (with DVC),
    the task is not retried, the flow fails with 'timed out' and the script's exit code is 124."""
    ws = make_project(tmp_path / "ws", {"orchestration": {"stage_timeout_s": 3, "retries": 1}})
    bin_dir = fake_rcd(tmp_path / "bin", "prompts", "hang")
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{VENV_BIN}{os.pathsep}{os.environ['PATH']}")
    state, seconds = run_flow(ws, stages=["prompts"])
    assert state.is_failed() and "timed out after 3 s" in state.message, state.message
    assert seconds < 120
    assert task_runs(state)["dvc repro prompts"].run_count == 1  # a hang is not retried
    assert rf.exit_code(state) == 124
    pid = int((bin_dir / "hang.pid").read_text())
    assert not _running(pid)  # the stage command did not outlive its timeout


def _running(pid: int) -> bool:
    """Alive and not a zombie (a killed child whose parent died waits here until PID 1 reaps it)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def test_prefect_yaml_is_written_from_params():
    """prefect.yaml (for `prefect deploy`) carries params.yaml's deployment name and schedule; a changed
    schedule makes it stale until it is rewritten."""
    import deploy

    committed = yaml.safe_load((REPO / "prefect.yaml").read_text())
    o = yaml.safe_load((REPO / "params.yaml").read_text())["orchestration"]
    (dep,) = committed["deployments"]
    assert dep["name"] == o["deployment"] and dep["entrypoint"] == deploy.ENTRYPOINT
    assert dep["schedules"] == [{"cron": o["cron"], "timezone": o["timezone"], "active": True}]
    assert (REPO / "prefect.yaml").read_text() == deploy.render_prefect_yaml()
    r = subprocess.run([sys.executable, "flows/deploy.py", "prefect-yaml", "--check"], cwd=REPO, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr


def test_flow_timeout_must_hold_a_stage(tmp_path):
    from rcdistill.errors import ParamsError
    from rcdistill.config import load_params

    ws = make_project(tmp_path / "ws", {"orchestration": {"stage_timeout_s": 100, "flow_timeout_s": 50}})
    with pytest.raises(ParamsError, match="stage_timeout_s 100 is above flow_timeout_s 50"):
        load_params(ws / "params.yaml")


# ---------------------------------------------------------------- the tiny pipeline, end to end

@pytest.fixture(scope="module")
def pipeline(tiny_project, tmp_path_factory):
    """A copy of the tiny project (every stage reproduced once, its own MLflow store) after one flow
    run with an override (steps=3): DVC reruns only what depends on distill.steps."""
    with temporary_settings(updates={PREFECT_HOME: _PREFECT_HOME}, restore_defaults={PREFECT_API_URL}):
        ws = tmp_path_factory.mktemp("flow") / "ws"
        shutil.copytree(tiny_project, ws, ignore=shutil.ignore_patterns("mlruns"))
        state, seconds = run_flow(ws, steps=3)
        print(f"\nfirst flow run: {seconds:.1f} s")
    return ws, state


def test_flow_end_to_end_then_nothing_to_do(pipeline):
    ws, state = pipeline
    assert state.is_completed(), state.message
    result = state.result()
    assert [s["stage"] for s in result["stages"]] == FLOW_STAGES
    status = {s["stage"]: s["status"] for s in result["stages"]}
    # only what depends on distill.steps reran; the latent cache (and its upstream), BOOT (which
    # starts from the teacher) and the conditions (a function of the cache) stayed; the conditional
    # models start from the RC student, so they reran
    assert status == {"cache_latents": "up to date", "distill": "ran", "consistency": "ran", "boot": "up to date",
                      "conditions": "up to date", "codi_reference": "ran", "codi": "ran", "codi_adapter": "ran",
                      "codi_eval": "ran", "evaluate": "ran", "register": "ran", "codi_register": "ran"}, status
    assert all(s not in r["reproduced"] for r in result["stages"] for s in ("prompts", "evaluators", "teacher"))
    assert result["changed"] == ["distill.steps"]
    text = (ws / "params.yaml").read_text()
    assert "# tiny params for the tests" in text and "steps: 3  # distill steps" in text
    assert dvc(ws, "status").stdout.strip().endswith("up to date.")
    # MLflow: the flow's own run, and every stage run tagged with the flow run and its overrides
    fr = flow_run_id(state)
    runs = mlflow_runs(ws, fr)
    assert {"prefect-flow", "distill", "consistency", "codi", "codi_adapter", "evaluate", "register",
            "register-student_fast", "register-student_boot"} <= set(runs), set(runs)
    assert not {"evaluators", "teacher"} & set(runs), set(runs)
    flow_run = runs["prefect-flow"]
    assert flow_run.info.status == "FINISHED" and flow_run.data.params["override.distill.steps"] == "3"
    assert result["mlflow_run_id"] == flow_run.info.run_id
    distill = runs["distill"]
    assert json.loads(distill.data.tags["rcd.overrides"]) == {"distill.steps": 3}
    assert distill.data.params["override.distill.steps"] == "3" and distill.data.params["distill.steps"] == "3"
    assert distill.data.tags["mlflow.parentRunId"] == flow_run.info.run_id
    # the artifact: metrics table and MLflow runs (and the model version once `register` ran)
    md = artifact_md(fr)
    assert "pipeline: completed" in md and "metrics/distill.json" in md and "student_unet_params" in md
    assert flow_run.info.run_id in md and distill.info.run_id in md
    reg_path = ws / "metrics" / "register.json"
    if "register" in FLOW_STAGES and reg_path.exists():
        reg = json.loads(reg_path.read_text())
        assert result["model_version"] == reg["version"] and f"version **{reg['version']}**" in md
    # each stage task's result is persisted (JSON in Prefect's result storage): readable after the run
    persisted = task_runs(state)["dvc repro distill"].state.result()
    assert persisted["stage"] == "distill" and persisted["status"] == "ran"
    # table and link artifacts: stages, metrics, the MLflow run, each registered version
    arts = artifacts_of(fr)
    assert arts["rcdistill-stages"].type == "table" and arts["rcdistill-metrics-table"].type == "table"
    stages_table = json.loads(arts["rcdistill-stages"].data)
    assert [row["stage"] for row in stages_table] == FLOW_STAGES
    metrics_rows = json.loads(arts["rcdistill-metrics-table"].data)
    assert any(r["file"] == "metrics/distill.json" and r["metric"] == "distill.student_unet_params" for r in metrics_rows)
    link = arts["rcdistill-mlflow-run"].data  # Prefect stores a link artifact as markdown: [text](url)
    assert f"/#/experiments/{flow_run.info.experiment_id}/runs/{flow_run.info.run_id})" in link
    if reg_path.exists():
        assert f"/#/models/{reg['model_name']}/versions/{reg['version']}" in arts["rcdistill-model-student"].data
    # the run is a DVC experiment: `dvc exp show` lists it beside `dvc exp run`s
    exp = result["dvc_experiment"]
    assert exp and exp.startswith("prefect-") and flow_run.data.tags["dvc.experiment"] == exp
    assert exp in dvc(ws, "exp", "list", "--name-only").stdout

    # nothing changed: every stage is up to date, no stage run in MLflow, done in seconds
    state2, seconds = run_flow(ws)
    print(f"second flow run (nothing to do): {seconds:.1f} s")
    assert state2.is_completed(), state2.message
    assert all(s["status"] == "up to date" and s["reproduced"] == [] for s in state2.result()["stages"])
    assert set(mlflow_runs(ws, flow_run_id(state2))) == {"prefect-flow"}
    assert seconds < 90


@pytest.mark.slow
def test_failed_stage_keeps_earlier_outputs_and_rerun_resumes(pipeline, tmp_path, monkeypatch):
    ws, first = pipeline
    assert first.is_completed()
    manifest = sha(ws / "data" / "latents" / "manifest.json")
    teacher_lock = yaml.safe_load((ws / "dvc.lock").read_text())["stages"]["cache_latents"]
    bin_dir = fake_rcd(tmp_path / "bin", "distill", "user")
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{VENV_BIN}{os.pathsep}{os.environ['PATH']}")

    state, _ = run_flow(ws, steps=5)
    assert state.is_failed()
    assert "stage 'distill' failed" in state.message and "simulated bad input for distill" in state.message
    runs = task_runs(state)
    assert runs["dvc repro cache_latents"].state.is_completed() and runs["dvc repro distill"].run_count == 1
    assert "dvc repro evaluate" not in runs
    # earlier stages: outputs and lock entries untouched; the override stays in params.yaml
    assert sha(ws / "data" / "latents" / "manifest.json") == manifest
    assert yaml.safe_load((ws / "dvc.lock").read_text())["stages"]["cache_latents"] == teacher_lock
    assert dvc(ws, "status", "cache_latents").stdout.strip().endswith("up to date.")
    assert yaml.safe_load((ws / "params.yaml").read_text())["distill"]["steps"] == 5

    # rerun (a transient failure on the way): picks up at distill, cache_latents is not redone
    fake_rcd(tmp_path / "bin", "distill", "transient")
    state, seconds = run_flow(ws)
    print(f"rerun after the failure: {seconds:.1f} s")
    assert state.is_completed(), state.message
    stages = {s["stage"]: s for s in state.result()["stages"]}
    assert stages["cache_latents"]["status"] == "up to date" and stages["distill"]["status"] == "ran"
    assert task_runs(state)["dvc repro distill"].run_count == 2
    assert sha(ws / "data" / "latents" / "manifest.json") == manifest
    assert dvc(ws, "status").stdout.strip().endswith("up to date.")


# ---------------------------------------------------------------- deployment on a local server

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(predicate, timeout: float, what: str, procs=()):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        for p in procs:
            if p.poll() is not None:
                raise AssertionError(f"{what}: {p.args} exited with {p.returncode}")
        try:
            value = predicate()
        except Exception:  # noqa: BLE001  (server not up yet)
            value = None
        if value:
            return value
        time.sleep(1)
    raise AssertionError(f"timed out waiting for {what}")


def _default_sigint() -> None:
    """Children must see Ctrl-C even when pytest runs in the background (where SIGINT is ignored)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _stop(proc: subprocess.Popen, sig=signal.SIGINT) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.mark.slow
def test_scheduled_deployment_on_a_local_server(pipeline, tmp_path):
    ws, first = pipeline
    assert first.is_completed()
    port = _free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect"), "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}",
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    env.pop("PREFECT_API_URL", None)
    logs = tmp_path / "logs"
    logs.mkdir()
    procs: list[subprocess.Popen] = []

    def start(name, *cmd, extra=None):
        fh = open(logs / f"{name}.log", "w")
        p = subprocess.Popen(list(cmd), cwd=REPO, env={**env, **(extra or {})}, stdout=fh, stderr=subprocess.STDOUT,
                             preexec_fn=_default_sigint)
        procs.append(p)
        return p

    client_env = {"PREFECT_API_URL": api}
    prefect = f"{VENV_BIN}/prefect"
    o = yaml.safe_load((ws / "params.yaml").read_text())["orchestration"]
    name = f"rcdistill/{o['deployment']}"
    try:
        server = start("server", prefect, "server", "start", "--host", "127.0.0.1", "--port", str(port))
        _wait(lambda: urllib.request.urlopen(f"{api}/health", timeout=2).status == 200, 120, "the server", [server])

        with temporary_settings(updates={PREFECT_API_URL: api}):
            from prefect.client.orchestration import get_client
            from prefect.deployments import run_deployment

            # 1. served deployment: schedule from params, a run triggered by hand completes
            serve = start("serve", sys.executable, "flows/deploy.py", "serve", "--workspace", str(ws), extra=client_env)
            with get_client(sync_client=True) as client:
                dep = _wait(lambda: client.read_deployment_by_name(name), 90, "the served deployment", [server, serve])
                assert [s.schedule.cron for s in dep.schedules] == [o["cron"]]
                assert dep.schedules[0].schedule.timezone == o["timezone"]
                assert dep.parameters["workspace"] == str(ws)
            run = run_deployment(name, parameters={"steps": 2, "stages": FLOW_STAGES}, timeout=600)
            assert run.state.is_completed(), f"{run.state.message}\n" + (logs / "serve.log").read_text()[-3000:]
            md = artifact_md(str(run.id))
            assert "pipeline: completed" in md and "`distill.steps` | 2 |" in md
            assert mlflow_runs(ws, str(run.id))["distill"].data.tags["prefect.deployment"] == o["deployment"]
            _stop(serve)

            # 2. the same deployment on a `process` work pool, run by a worker
            out = subprocess.run([sys.executable, "flows/deploy.py", "deploy", "--workspace", str(ws), "--pool",
                                  "rcd-test-pool"], cwd=REPO, env={**env, **client_env}, capture_output=True,
                                 text=True, timeout=120)
            assert out.returncode == 0, out.stderr[-3000:]
            with get_client(sync_client=True) as client:
                assert client.read_deployment_by_name(name).work_pool_name == "rcd-test-pool"
            worker = start("worker", prefect, "worker", "start", "--pool", "rcd-test-pool", extra=client_env)
            cli = subprocess.run([prefect, "deployment", "run", name, "--param", f"stages={json.dumps(FLOW_STAGES)}",
                                  "--watch", "--watch-timeout", "600"],
                                 cwd=REPO, env={**env, **client_env}, capture_output=True, text=True, timeout=660)
            assert cli.returncode == 0, cli.stdout[-2000:] + cli.stderr[-2000:] + (logs / "worker.log").read_text()[-3000:]
            assert "Completed" in cli.stdout
            with get_client(sync_client=True) as client:
                runs = client.read_flow_runs()
            by_pool = [r for r in runs if r.work_pool_name == "rcd-test-pool"]
            assert by_pool and by_pool[0].state.is_completed()
            assert "pipeline: completed" in artifact_md(str(by_pool[0].id))
            _stop(worker)

            # 3. Prefect's own way: `prefect deploy --all` reads prefect.yaml (schedule from params)
            for cmd in (["work-pool", "create", "rcd-process", "--type", "process"], ["deploy", "--all"]):
                out = subprocess.run([prefect, "--no-prompt", *cmd], cwd=REPO, env={**env, **client_env},
                                     capture_output=True, text=True, timeout=300)
                assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
            assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
            repo_o = yaml.safe_load((REPO / "params.yaml").read_text())["orchestration"]
            with get_client(sync_client=True) as client:
                dep = client.read_deployment_by_name(f"rcdistill/{repo_o['deployment']}")
            assert dep.entrypoint == "flows/rcdistill_flow.py:rcdistill" and dep.work_pool_name == "rcd-process"
            assert [s.schedule.cron for s in dep.schedules] == [repo_o["cron"]]
            assert dep.pull_steps == [{"prefect.deployments.steps.set_working_directory": {"directory": str(REPO)}}]
    finally:
        for p in reversed(procs):
            _stop(p)
