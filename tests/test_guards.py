"""Guards a promotion relies on: params without holes, gates NaN cannot pass, registry failures that
are not mistaken for 'no champion', the judges' and the teacher's checks enforced, MLflow runs that end."""
import copy
import json
import math
import shutil
from pathlib import Path

import pytest
import yaml

from rcdistill.config import GateRules, Params, load_params, parse_params
from rcdistill.errors import GateFailed, ParamsError, RegistryError
from rcdistill.registry.gate import decide
from rcdistill.tracking import flatten
from tests.conftest import TINY, deep_update

REPO = Path(__file__).resolve().parents[1]
BASE = yaml.safe_load((REPO / "params.yaml").read_text())


def _with(dotted: str, value) -> dict:
    data = copy.deepcopy(BASE)
    node = data
    *path, last = dotted.split(".")
    for part in path:
        node = node.setdefault(part, {})
    node[last] = value
    return data


# ---------------------------------------------------------------- params
def test_code_defaults_are_params_yaml():
    """One source of defaults: a key dropped from params.yaml keeps the value it had."""
    code, file = flatten(Params().model_dump(mode="json")), flatten(load_params(REPO / "params.yaml").model_dump(mode="json"))
    assert {k: (code.get(k), file.get(k)) for k in code.keys() | file.keys() if code.get(k) != file.get(k)} == {}


def test_every_effective_setting_is_written_in_params_yaml():
    """DVC sees only what params.yaml holds: a setting left to a code default is invisible to
    `dvc params diff` and to the stages that declare its section."""
    written = flatten(yaml.safe_load((REPO / "params.yaml").read_text()))
    missing = [k for k in flatten(Params().model_dump(mode="json")) if k not in written]
    assert missing == []


@pytest.mark.parametrize("dotted,value,words", [
    # non-finite numbers
    ("distill.lr", float("nan"), "distill.lr"),
    ("teacher.gate.shape", float("nan"), "teacher.gate.shape"),
    ("registry.gate.min", {"unseen.shape": float("nan")}, "registry.gate.min"),
    # gate values outside what the metric can take
    ("registry.gate.min", {"unseen.shape": 1.5}, "outside what the metric can take"),
    ("registry.gate.vs_champion", {"unseen.shape": -0.1}, "negative slack"),
    ("registry.gate.max", {"unseen.fid": -1.0}, "outside what the metric can take"),
    ("registry.fast_gate", {"min": {"seen.shape": 0.9}, "max": {"seen.shape": 0.8}}, "above ceiling"),
    ("evaluators.gate.classifier", 1.2, "evaluators.gate.classifier"),
    # no silent coercion
    ("distill.ema", 1, "distill.ema"),
    ("distill.steps", 600.0, "distill.steps"),
    ("distill.steps", True, "distill.steps"),
    ("sampling.steps", "25", "sampling.steps"),
    # rules across keys
    ("distill.warmup_steps", 450, "warmup_steps 450 is not below steps 450"),
    ("consistency.num_ddim_timesteps", 2, "beyond the solver grid"),  # default_steps 4
    ("teacher.unet.attention_head_dim", 24, "does not divide"),
    ("teacher.text_encoder.heads", 3, "do not divide"),
    ("distill.out_dir", "", "distill.out_dir is empty"),
    ("consistency.out_dir", "models/student", "overlap"),
    ("distill.work_dir", "models/student/ckpt", "overlap"),
    ("evaluate.steps", {"student_fast": [80]}, "beyond the few-step student's solver grid"),
    ("distill.unpaired.weight", -1.0, "distill.unpaired.weight"),
    ("distill.unpaired.guidance_scale", 0.5, "distill.unpaired.guidance_scale"),
    ("distill.unpaired.target", "cfg", "distill.unpaired.target"),
])
def test_params_holes_are_refused_with_one_line(dotted, value, words):
    with pytest.raises(ParamsError) as err:
        parse_params(_with(dotted, value))
    message = str(err.value)
    assert words in message and "\n" not in message, message


def test_matched_pairing_needs_the_worlds_attributes():
    data = _with("prompts", {"source": "files", "cache_file": "c.txt", "rc_file": "r.txt"})
    parse_params(data)  # uniform pairing: fine
    data["distill"] = {**data.get("distill", {}), "unpaired": {"pairing": "matched"}}
    with pytest.raises(ParamsError, match="matched pairs by the world's attributes"):
        parse_params(data)


def test_the_repository_params_and_profiles_still_load():
    for path in [REPO / "params.yaml", *(REPO / "profiles").glob("*/params.yaml")]:
        load_params(path)


# ---------------------------------------------------------------- promotion gate
def test_a_nan_metric_fails_every_rule_that_reads_it():
    rules = GateRules(min={"unseen.shape": 0.5}, max={"ms_per_image": 100.0}, vs_champion={"seen.shape": 0.02})
    good = {"unseen.shape": 0.9, "ms_per_image": 10.0, "seen.shape": 0.9}
    assert decide(good, None, rules).promote and decide(good, good, rules).promote
    for metric in good:
        d = decide({**good, metric: math.nan}, None, rules)
        assert not d.promote and metric in d.reason and "not a finite number" in d.reason
    d = decide(good, {**good, "seen.shape": math.nan}, rules)
    assert not d.promote and "champion's seen.shape" in d.reason
    assert not decide({**good, "unseen.shape": math.inf}, None, rules).promote


def test_a_registry_that_fails_mid_promotion_promotes_nothing(tiny_project, tmp_path, monkeypatch, capsys):
    """'No champion yet' and 'the registry failed' are different: a failure raises RegistryError
    (exit 3, the store named), and the champion alias stays where it was."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import INTERNAL_ERROR

    from rcdistill import cli

    project = tmp_path / "proj"
    shutil.copytree(tiny_project, project, ignore=shutil.ignore_patterns(".dvc"))
    monkeypatch.chdir(project)
    uri = f"sqlite:///{project / 'mlruns/mlflow.db'}"
    before = MlflowClient(uri).get_registered_model("rcdistill-student").aliases
    assert "champion" in before

    def broken(self, *a, **k):
        raise MlflowException("database is locked", error_code=INTERNAL_ERROR)

    monkeypatch.setattr(MlflowClient, "get_model_version", broken)
    assert cli.main(["promote", "--version", "1"]) == 3
    err = capsys.readouterr().err
    assert err.startswith("error: MLflow registry at sqlite:///mlruns/mlflow.db") and "nothing promoted" in err
    monkeypatch.undo()
    assert MlflowClient(uri).get_registered_model("rcdistill-student").aliases == before

    # a lookup failure while registering is not 'not registered yet' (that would make a duplicate)
    from rcdistill.registry.stage import register_entry, registry_entries

    monkeypatch.chdir(project)
    monkeypatch.setattr(MlflowClient, "search_model_versions", broken)
    params = load_params("params.yaml")
    evaluated = json.loads((project / "metrics/evaluate.json").read_text())
    with pytest.raises(RegistryError, match="looking up rcdistill-student"):
        register_entry(params, registry_entries(params, evaluated)[0], evaluated)


def test_no_registered_model_is_no_champion(tmp_path, monkeypatch):
    from mlflow import MlflowClient

    from rcdistill.registry.stage import _version_by_alias

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert _version_by_alias(client, "never-registered", "champion") is None


# ---------------------------------------------------------------- the judges' and the teacher's own checks
def _tiny(**extra) -> Params:
    return parse_params(deep_update(deep_update(BASE, TINY), extra))


def test_evaluators_below_their_floor_fail_and_leave_no_judges(tmp_path, monkeypatch):
    from rcdistill.evaluators.stage import METRICS_FILE, run_evaluators_stage

    monkeypatch.chdir(tmp_path)
    params = _tiny(evaluators={"gate": {"classifier": 0.0, "clip_zero_shot": 1.0}})
    with pytest.raises(GateFailed, match="clip_zero_shot"):
        run_evaluators_stage(params)
    m = json.loads(Path(METRICS_FILE).read_text())
    assert m["passed"] is False and m["failures"][0].startswith("clip_zero_shot.")
    assert not Path(params.evaluators.out_dir).exists()  # the candidate was discarded


def test_teacher_step_checks_are_enforced(tmp_path, monkeypatch):
    from rcdistill.evaluators.stage import run_evaluators_stage
    from rcdistill.teacher.stage import CHECKS_FILE, run_teacher_stage

    monkeypatch.chdir(tmp_path)
    run_evaluators_stage(_tiny(evaluators={"gate": {"classifier": 0.0, "clip_zero_shot": 0.0}}))
    params = _tiny(teacher={"checks": {"vae_recon": 1.0, "text": 0.0, "cond_uncond_gap": 0.0}})
    with pytest.raises(GateFailed, match="vae_recon"):
        run_teacher_stage(params)
    m = json.loads(Path(CHECKS_FILE).read_text())["teacher"]
    assert m["passed"] is False and m["failures"][0].startswith("vae_recon.") and "vae_recon_shape" in m["checks"]
    assert not Path(params.teacher.path).exists()


# ---------------------------------------------------------------- the flow's MLflow run always ends
def test_flow_mlflow_run_ends_even_when_logging_fails(tmp_path, monkeypatch):
    import logging

    from mlflow import MlflowClient

    import flows  # noqa: F401
    from flows import mlflow_run

    monkeypatch.setattr(mlflow_run, "get_run_logger", lambda: logging.getLogger("test"))
    params = load_params(REPO / "params.yaml")
    run = mlflow_run.FlowRun(tmp_path, params, {"stage": "prefect-flow"}, {})
    assert run.run_id

    def broken(*a, **k):
        raise RuntimeError("store went away")

    monkeypatch.setattr(MlflowClient, "log_batch", broken)
    run.finish(True, {"stage.distill": "ran"}, {"distill.loss": 1.0})
    assert MlflowClient(run.uri).get_run(run.run_id).info.status == "FINISHED"
