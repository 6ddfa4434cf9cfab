"""Tiny-config round trip of the real stages: prompts -> evaluators -> teacher -> load offline -> sample."""
import json
from pathlib import Path

import pytest
import torch
import yaml
from diffusers import StableDiffusionPipeline
from PIL import Image

from rcdistill.teacher.tokenizer import build_tokenizer
from tests.conftest import rcd


def test_tokenizer_is_clip_bpe_offline():
    import open_clip

    tok = build_tokenizer(16)
    assert len(tok) == 49408
    ours = tok("a large red circle on the left").input_ids
    theirs = open_clip.tokenizer.SimpleTokenizer()("a large red circle on the left")[0]
    assert ours == theirs[: len(ours)].tolist()


def test_teacher_folder_is_a_real_pipeline_that_loads_offline(tiny_project):
    folder = tiny_project / "models/teacher"
    for part in ("unet", "vae", "text_encoder"):
        assert list((folder / part).glob("*.safetensors")), part
        assert not list((folder / part).glob("*.bin")), part
    assert not (folder / "safety_checker").exists()
    pipe = StableDiffusionPipeline.from_pretrained(folder, local_files_only=True)
    assert pipe.safety_checker is None and len(pipe.tokenizer) == 49408
    out = pipe("a large red circle in the center", num_inference_steps=2, height=32, width=32,
               generator=torch.Generator().manual_seed(0), output_type="np").images
    assert out.shape == (1, 32, 32, 3)


def test_teacher_metrics_and_checks_are_written(tiny_project):
    m = json.loads((tiny_project / "metrics/teacher.json").read_text())["teacher"]
    for split in ("seen", "unseen"):
        assert set(m[split]) == {"shape", "colour", "size", "position"}
        assert all(0 <= v <= 1 for v in m[split].values())
    floors = yaml.safe_load((tiny_project / "params.yaml").read_text())["teacher"]["gate"]
    assert m["passed"] == all(m[s][a] >= floors[a] for s in ("seen", "unseen") for a in ("shape", "colour"))
    assert m["passed"]  # the tiny floors (a failing floor: test_failed_gate_stops_the_pipeline_...)
    checks = json.loads((tiny_project / "metrics/teacher_checks.json").read_text())["teacher"]["checks"]
    assert "cond_uncond_gap" in checks and "vae_recon_colour" in checks
    assert json.loads((tiny_project / "models/teacher/training_checks.json").read_text()) == checks
    assert (tiny_project / "mlruns/mlflow.db").exists()


def test_sample_command_single_and_grid(tiny_project):
    r = rcd("sample", "--model", "models/teacher", "a large red circle on the left", "-o", "out.png",
            cwd=tiny_project)
    assert r.returncode == 0, r.stderr
    assert Image.open(tiny_project / "out.png").size == (128, 128)
    r = rcd("sample", "--model", "models/teacher", "a red circle", "a blue square", "--per-prompt", "3",
            "--scale", "1", "-o", "grid.png", cwd=tiny_project)
    assert r.returncode == 0, r.stderr
    w, h = Image.open(tiny_project / "grid.png").size
    assert (w, h) == (3 * 34 + 2, 2 * 34 + 2)
    r = rcd("sample", "--model", "nowhere", "x", cwd=tiny_project)
    assert r.returncode == 2 and "--model nowhere" in r.stderr


def test_failed_gate_stops_the_pipeline_before_the_latent_cache(tiny_project, tmp_path):
    import shutil

    import yaml

    project = tmp_path / "p"
    shutil.copytree(tiny_project, project, ignore=shutil.ignore_patterns("mlruns", "outputs"))
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["teacher"]["gate"]["shape"] = 1.0
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    r = rcd("teacher-gate", cwd=project)
    assert r.returncode == 1 and "quality gate failed" in r.stderr and "seen shape" in r.stderr
    assert json.loads((project / "metrics/teacher.json").read_text())["teacher"]["passed"] is False
    before = sorted((project / "data/latents").iterdir())
    r = rcd("cache-latents", "--rebuild", cwd=project)  # by hand: still refused
    assert r.returncode != 0 and "failed its quality gate" in r.stderr
    assert sorted((project / "data/latents").iterdir()) == before


def test_teacher_and_evaluators_do_not_depend_on_the_held_out_concepts(tiny_project, tmp_path):
    """Another world.unseen re-judges the teacher and redoes prompts, cache and what follows,
    but neither retrains the evaluators, the teacher nor the RC-pool BOOT student."""
    import os
    import shutil
    import subprocess
    import sys

    import yaml

    project = tmp_path / "p"
    shutil.copytree(tiny_project, project, ignore=shutil.ignore_patterns("mlruns", "outputs"))
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["world"]["unseen"] = ["cross"]
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    out = subprocess.run([sys.executable, "-m", "dvc", "status"], cwd=project, capture_output=True, text=True,
                         env=env).stdout
    stale = {line.rstrip(":").strip() for line in out.splitlines() if line and not line.startswith((" ", "\t"))}
    # dvc status names the stages whose own deps changed; the rest (gate, cache, ...) follow prompts
    assert "prompts" in stale, out
    assert not {"evaluators", "teacher"} & stale, out
    # once the gate has re-judged the teacher on the new eval sets, the RC-pool BOOT student stays:
    # its texts and the gate's verdict file are unchanged (the gate's metrics are not)
    r = subprocess.run([sys.executable, "-m", "dvc", "repro", "teacher_gate"], cwd=project, capture_output=True,
                       text=True, env=env, timeout=600)
    assert r.returncode == 0, (r.stdout + r.stderr)[-2000:]
    assert (project / "metrics/teacher.json").read_text() != (tiny_project / "metrics/teacher.json").read_text()
    for name, fresh in (("boot", True), ("cache_latents", False)):
        out = subprocess.run([sys.executable, "-m", "dvc", "status", name], cwd=project, capture_output=True,
                             text=True, env=env).stdout
        assert out.strip().endswith("up to date.") == fresh, (name, out)


def test_student_pipeline_loads_offline_and_shares_the_teacher_parts(tiny_project):
    import filecmp

    student, teacher = tiny_project / "models/student", tiny_project / "models/teacher"
    pipe = StableDiffusionPipeline.from_pretrained(student, local_files_only=True)
    assert pipe.unet.mid_block is None  # bk_small
    teacher_pipe = StableDiffusionPipeline.from_pretrained(teacher, local_files_only=True)
    assert pipe.tokenizer("a red circle").input_ids == teacher_pipe.tokenizer("a red circle").input_ids
    for part in ("vae", "text_encoder", "scheduler"):
        files = sorted(f.name for f in (teacher / part).iterdir())
        assert files and files == sorted(f.name for f in (student / part).iterdir())
        for name in files:
            a, b = student / part / name, teacher / part / name
            if name.endswith(".safetensors"):
                assert filecmp.cmp(a, b, shallow=False), (part, name)
            elif name.endswith("config.json"):  # same config, save-time metadata ("_..." keys) aside
                strip = lambda d: {k: v for k, v in d.items() if not k.startswith("_")}  # noqa: E731
                assert strip(json.loads(a.read_text())) == strip(json.loads(b.read_text())), (part, name)
    m = json.loads((tiny_project / "metrics/distill.json").read_text())["distill"]
    assert m["student"] == "bk_small" and 0 < m["param_ratio"] < 1
    assert set(m["seen"]) == set(m["unseen"]) == {"shape", "colour", "size", "position"}
    r = rcd("sample", "--model", "models/student", "a small blue square, top left", "-o", "s.png", cwd=tiny_project)
    assert r.returncode == 0, r.stderr


def test_teacher_stage_logs_where_its_time_goes(tiny_project):
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{tiny_project / 'mlruns' / 'mlflow.db'}")
    exp = client.get_experiment_by_name("rcdistill")
    run = client.search_runs([exp.experiment_id], "tags.stage = 'teacher'")[0]
    phases = {k.split(".", 1)[1]: v for k, v in run.data.metrics.items() if k.startswith("seconds.")}
    assert set(phases) == {"render", "vae", "text_encoder", "encode", "unet", "save"}
    assert all(v > 0 for v in phases.values())


def test_teacher_recipe_benchmark_trains_and_judges_a_candidate(tiny_project, tmp_path):
    """benchmarks/teacher_recipe.py: the real stage code and the real gate, nothing in the workspace touched."""
    import subprocess
    import sys

    before = (tiny_project / "metrics/teacher.json").read_text()
    out = tmp_path / "recipes.json"
    cmd = [sys.executable, str(Path(__file__).parents[1] / "benchmarks/teacher_recipe.py"), "short",
           "--set", "teacher.unet.steps=3", "--set", "teacher.gate.shape=1.0", "--steps", "2", "4", "--out", str(out)]
    for _ in range(2):  # a rerun of the same name replaces its row
        r = subprocess.run(cmd, cwd=tiny_project, capture_output=True, text=True)
        assert r.returncode == 0, r.stderr[-2000:]
    rows = json.loads(out.read_text())["recipes"]
    assert [row["name"] for row in rows] == ["short"] and rows[0]["unet_steps"] == 3
    row = rows[0]
    assert set(row["seconds"]) == {"render", "vae", "text_encoder", "encode", "unet", "save", "gate"}
    assert set(row["gate"]["seen"]) == {"shape", "colour", "size", "position"}
    assert row["gate"]["passed"] is False and "seen shape" in row["gate"]["failures"][0]  # shape floor 1.0
    assert "gate failed" in r.stdout
    # judged again at each step count (the tiny params sample with 4): drift is max - min per cell
    assert sorted(row["by_steps"], key=int) == ["2", "4"] and row["by_steps"]["4"]["seen"] == {
        k: row["gate"]["seen"][k] for k in row["by_steps"]["4"]["seen"]}
    cells = [row["by_steps"][k]["seen"]["colour"] for k in ("2", "4")]
    assert row["drift"]["seen.colour"] == round(max(cells) - min(cells), 4)
    assert (tiny_project / "metrics/teacher.json").read_text() == before
