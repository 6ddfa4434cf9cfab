"""MLflow registry: pyfunc round trip, idempotent registration, the promotion gate."""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file, save_file

from rcdistill.config import GateRules
from rcdistill.registry.gate import decide
from tests.conftest import rcd


def test_gate_logic_on_known_numbers():
    rules = GateRules(min={"unseen.shape": 0.5}, max={"unet_step_ratio": 0.8},
                      vs_champion={"unseen.shape": 0.02, "seen.fid": 0.01})
    good = {"unseen.shape": 0.9, "unet_step_ratio": 0.6, "seen.fid": 0.05}
    assert decide(good, None, rules).promote
    assert not decide({**good, "unseen.shape": 0.4}, None, rules).promote
    assert "ceiling" in decide({**good, "unet_step_ratio": 0.9}, None, rules).reason
    champ = {"unseen.shape": 0.9, "unet_step_ratio": 0.6, "seen.fid": 0.05}
    assert decide({**good, "unseen.shape": 0.89}, champ, rules).promote  # within the slack
    assert not decide({**good, "unseen.shape": 0.85}, champ, rules).promote
    worse_fid = decide({**good, "seen.fid": 0.07}, champ, rules)  # FID: lower is better
    assert not worse_fid.promote and "seen.fid" in worse_fid.reason
    assert "missing" in decide({"unet_step_ratio": 0.5}, None, rules).reason


def test_default_codi_gate_refuses_a_model_that_reads_only_its_text_or_only_its_condition():
    from rcdistill.config import Params

    rules = Params().registry.codi_gate
    both = {"seen.edge_f1": 1.0, "unseen.edge_f1": 0.99, "seen.colour": 1.0, "unseen.colour": 1.0,
            "seen.shape": 0.79, "seen_swapped.shape": 0.76, "seen_swapped.colour": 1.0}
    assert decide(both, None, rules).promote
    # whole captions name the shape: own-caption scores are perfect, but with another shape's
    # caption it draws that shape (numbers of the caption models measured at commit 9e94b41)
    text_only = {**both, "seen.shape": 1.0, "seen_swapped.shape": 0.0125}
    assert "seen_swapped.shape" in decide(text_only, None, rules).reason
    condition_only = {**both, "seen_swapped.colour": 0.17}          # keeps the latent's colour
    assert "seen_swapped.colour" in decide(condition_only, None, rules).reason
    assert "seen.shape" in decide({**both, "seen.shape": 0.2}, None, rules).reason   # ignores its edge map


def _client(project):
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{project / 'mlruns/mlflow.db'}")
    return mlflow, mlflow.MlflowClient()


def test_registered_student_is_champion_and_loads_as_pyfunc_offline(tiny_project):
    from rcdistill.sampling import generate, load_pipeline

    result = json.loads((tiny_project / "metrics/register.json").read_text())
    assert result["promoted"] and result["champion_version"] == result["version"]
    mlflow, client = _client(tiny_project)
    mv = client.get_model_version_by_alias("rcdistill-student", "champion")
    for key in ("git_commit", "student_digest", "student", "rc_prob", "metric.unseen.shape", "gate"):
        assert key in mv.tags, key
    assert len(mv.tags) <= 12, sorted(mv.tags)  # readable in the UI; the rest is in the run
    run = client.get_run(mv.run_id)
    assert run.data.params["distill.rc_prob"] == str(mv.tags["rc_prob"]) and "model.unseen.shape" in run.data.metrics
    assert f"get-artifact?path=samples.png&run_uuid={mv.run_id}" in mv.description
    assert "## Metrics" in mv.description and "## Lineage" in mv.description
    artifacts = {a.path for a in client.list_artifacts(mv.run_id)}
    assert {"model_card.md", "samples.png"} <= artifacts
    model = mlflow.pyfunc.load_model("models:/rcdistill-student@champion")
    prompts = ["a large red circle in the center", "a small blue square, top left"]
    images = model.predict(prompts, params={"seed": 7, "steps": 3, "guidance_scale": 3.0})
    assert images.shape == (2, 32, 32, 3) and images.dtype == np.uint8
    direct = generate(load_pipeline(str(tiny_project / "models/student")), prompts, [7, 8], 3, 3.0)
    assert np.abs(direct.permute(0, 2, 3, 1).numpy().astype(int) - images.astype(int)).max() <= 1


def test_logged_model_follows_mlflow_3_conventions(tiny_project):
    """The version's logged model carries its metrics, a cheap input example that serves, and pinned
    requirements; stage runs list the datasets they read (digest: DVC's md5) and nest under no one
    outside a flow."""
    from importlib.metadata import version

    from mlflow.models import Model

    mlflow, client = _client(tiny_project)
    mv = client.get_model_version_by_alias("rcdistill-student", "champion")
    logged = client.get_logged_model(mv.model_id or mv.source.removeprefix("models:/"))  # sqlite keeps it in source
    model_metrics = {m.key: m.value for m in logged.metrics}
    run_metrics = client.get_run(mv.run_id).data.metrics
    assert model_metrics and model_metrics["model.unseen.shape"] == run_metrics["model.unseen.shape"]
    local = mlflow.artifacts.download_artifacts(f"models:/rcdistill-student/{mv.version}")
    example = Model.load(local).load_input_example(local)
    assert list(example) == ["a red circle"]
    assert json.loads((Path(local) / "serving_input_example.json").read_text())["params"]["steps"] == 1
    reqs = (Path(local) / "requirements.txt").read_text().split()
    assert f"diffusers=={version('diffusers')}" in reqs and all("==" in r for r in reqs if not r.startswith("-"))
    lock = yaml.safe_load((tiny_project / "dvc.lock").read_text())["stages"]
    cache_md5 = next(o["md5"] for o in lock["cache_latents"]["outs"] if o["path"] == "data/latents")
    distill = client.search_runs([client.get_run(mv.run_id).info.experiment_id], "attributes.run_name = 'distill'")[0]
    inputs = {d.dataset.name: d for d in distill.inputs.dataset_inputs}
    assert {"latent_cache", "cache_prompts", "rc_pool", "eval_seen", "eval_unseen"} <= set(inputs)
    assert inputs["latent_cache"].dataset.digest == cache_md5.removesuffix(".dir")[:36]
    assert {t.key: t.value for t in inputs["latent_cache"].tags}["mlflow.data.context"] == "training"
    assert "mlflow.parentRunId" not in distill.data.tags


def test_few_step_student_is_its_own_model_and_samples_with_its_own_defaults(tiny_project):
    """models:/<fast name>@champion returns few-step LCM images with no params at all."""
    from rcdistill.sampling import generate, load_pipeline

    result = json.loads((tiny_project / "metrics/register.json").read_text())["student_fast"]
    assert result["model_name"] == "rcdistill-student-fast" and result["promoted"]
    mlflow, client = _client(tiny_project)
    mv = client.get_model_version_by_alias("rcdistill-student-fast", "champion")
    assert mv.tags["model"] == "student_fast" and mv.tags["steps"] == "2" and "metric.unseen.shape" in mv.tags
    assert mv.tags["student"] == "bk_small" and mv.tags["init"] == "student"
    assert "Few-step student" in mv.description and "### Across sampling steps" in mv.description
    model = mlflow.pyfunc.load_model("models:/rcdistill-student-fast@champion")
    prompts = ["a large red circle in the center", "a small blue square, top left"]
    images = model.predict(prompts)
    assert images.shape == (2, 32, 32, 3) and images.dtype == np.uint8
    pipe = load_pipeline(str(tiny_project / "models/student_fast"), None)  # its own LCMScheduler
    direct = generate(pipe, prompts, [0, 1], 2, 3.0)
    assert np.abs(direct.permute(0, 2, 3, 1).numpy().astype(int) - images.astype(int)).max() <= 1
    other = generate(pipe, prompts, [0, 1], 1, 3.0)  # and the default really is 2 steps, not 1
    assert np.abs(other.permute(0, 2, 3, 1).numpy().astype(int) - images.astype(int)).max() > 1


def test_same_student_twice_makes_no_second_version(tiny_project):
    r = rcd("register", cwd=tiny_project)
    assert r.returncode == 0 and "already registered" in r.stdout, r.stderr
    _, client = _client(tiny_project)
    assert len(client.search_model_versions("name='rcdistill-student'")) == 1


def _variant(project, name: str, unseen_shape: float, seed: int) -> None:
    """Another student folder (perturbed weights) with a known evaluate metric."""
    folder = project / "models" / name
    shutil.copytree(project / "models/student", folder)
    weights = next((folder / "unet").glob("*.safetensors"))
    state = load_file(weights)
    gen = torch.Generator().manual_seed(seed)
    save_file({k: v + 1e-3 * torch.randn(v.shape, generator=gen) for k, v in state.items()}, weights)
    metrics = json.loads((project / "metrics/evaluate.json").read_text())
    metrics["student"]["unseen"]["shape"] = unseen_shape
    (project / f"eval_{name}.json").write_text(json.dumps(metrics))


@pytest.fixture
def gated_project(tiny_project, tmp_path):
    """A copy of the tiny project with its own registry and a gate on unseen shape accuracy (without
    the optional BOOT student, which register would log each time)."""
    project = tmp_path / "proj"
    shutil.copytree(tiny_project, project, ignore=shutil.ignore_patterns("mlruns", "outputs", "student_boot"))
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["registry"] = {"gate": {"min": {"unseen.shape": 0.1}, "max": {}, "vs_champion": {"unseen.shape": 0.0}}}
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    return project


def _register(project, name: str) -> dict:
    shutil.copy(project / f"eval_{name}.json", project / "metrics/evaluate.json")
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["distill"]["out_dir"] = f"models/{name}"
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    r = rcd("register", cwd=project)
    assert r.returncode == 0, r.stderr
    return json.loads((project / "metrics/register.json").read_text())


def test_gate_promotes_a_better_student_and_keeps_the_champion_for_a_worse_one(gated_project):
    p = gated_project
    for name, acc, seed in (("first", 0.5, 1), ("better", 0.7, 2), ("worse", 0.4, 3), ("awful", 0.05, 4)):
        _variant(p, name, acc, seed)
    assert _register(p, "first")["promoted"]
    better = _register(p, "better")
    assert better["promoted"] and better["champion_version"] == better["version"] == 2
    worse = _register(p, "worse")
    assert not worse["promoted"] and worse["champion_version"] == 2 and "unseen.shape" in worse["reason"]
    awful = _register(p, "awful")
    assert not awful["promoted"] and "floor" in awful["reason"]
    _, client = _client(p)
    assert str(client.get_model_version_by_alias("rcdistill-student", "challenger").version) == "4"
    assert client.get_model_version("rcdistill-student", "3").tags["gate"] == worse["reason"]
    r = rcd("promote", "--version", "3", cwd=p)  # by hand: the gate still applies...
    assert r.returncode == 1 and "not promoted" in r.stdout
    r = rcd("promote", "--version", "3", "--force", cwd=p)  # ...unless forced
    assert r.returncode == 0 and str(client.get_model_version_by_alias("rcdistill-student", "champion").version) == "3"


def test_summary_prints_the_headline_numbers(tiny_project):
    r = rcd("summary", cwd=tiny_project)
    assert r.returncode == 0, r.stderr
    assert "unseen shape" in " ".join(r.stdout.split()) and "registry: rcdistill-student v1" in r.stdout
    assert "registry: rcdistill-student-fast v1" in r.stdout and "student_fast" in r.stdout
