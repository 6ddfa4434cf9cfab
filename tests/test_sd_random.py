"""The SD-sized profile end to end on CPU: real channel widths (UNet 859.5M, bk_small 482M),
16x16 latents, a handful of prompts and steps. It runs what the toy cannot reach: multi-GB
pipeline folders and checkpoints, fp16 latent shards, bf16 teacher and autocast, the Inception
FID path, an open_clip CLIP score and multi-GB registered pyfunc models."""
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import REPO, deep_update, rcd

CPU = {  # what a 2-core CPU can run in minutes; widths stay SD's
    "world": {"image_size": 128},
    "prompts": {"cache_pool_size": 8, "eval_per_set": 4},
    "sampling": {"steps": 3, "batch_size": 4},
    "cache": {"shard_size": 4},
    "distill": {"steps": 3, "batch_size": 2, "checkpoint_every": 2, "warmup_steps": 1, "log_every": 1,
                "mixed_precision": "bf16", "teacher_dtype": "bfloat16"},
    "consistency": {"steps": 2, "batch_size": 2, "checkpoint_every": 2, "warmup_steps": 1, "log_every": 1,
                    "mixed_precision": "bf16", "teacher_dtype": "bfloat16"},
    "boot": {"steps": 2, "batch_size": 2, "checkpoint_every": 2, "warmup_steps": 1, "log_every": 1,
             "mixed_precision": "bf16", "teacher_dtype": "bfloat16"},
    "codi": {"train": {"batch_size": 2, "warmup_steps": 1, "checkpoint_every": 2, "log_every": 1,
                       "mixed_precision": "bf16", "teacher_dtype": "bfloat16"},
             "reference": {"steps": 2, "default_steps": 3}, "full": {"steps": 2, "default_steps": 2},
             "adapter": {"steps": 2, "default_steps": 2}, "eval_per_set": 4,
             "eval_steps": {"reference": [3], "full": [2], "adapter": [2]}},
    "evaluate": {"eval_per_set": 4, "latency_repeats": 1, "grid_prompts": 2, "kid_subsets": 2,
                 "diversity_prompts": 2, "diversity_seeds": 2,
                 "steps": {"teacher": [3], "student": [3], "student_fast": [2], "student_boot": [1]}},
}


@pytest.fixture
def workspace(tmp_path):
    ws = tmp_path / "ws"
    yield ws
    shutil.rmtree(ws, ignore_errors=True)  # about 30 GB of pipeline folders, checkpoints and DVC cache


@pytest.mark.slow
def test_sd_sized_profile_runs_end_to_end_on_cpu(workspace, tmp_path):
    ws = workspace
    ws.mkdir()
    shutil.copy(REPO / "dvc.yaml", ws)
    shutil.copytree(REPO / "src", ws / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    shutil.copytree(REPO / "profiles", ws / "profiles")
    assert rcd("params", "use", "profiles/sd-random/params.yaml", cwd=ws).returncode == 0  # as a user would
    profile = yaml.safe_load((ws / "params.yaml").read_text())
    (ws / "params.yaml").write_text(yaml.safe_dump(deep_update(profile, CPU), sort_keys=False))
    subprocess.run(["git", "init", "-q"], cwd=ws, check=True)
    subprocess.run([sys.executable, "-m", "dvc", "init", "-q"], cwd=ws, check=True)

    r = rcd("sd-random", "--out", "models/sd_random", "--latent-size", "16", cwd=ws)
    assert r.returncode == 0, r.stderr[-2000:]
    teacher_gb = sum(f.stat().st_size for f in (ws / "models/sd_random/teacher").rglob("*") if f.is_file()) / 2**30
    assert teacher_gb > 3.5  # fp32 SD v1: 3.4 GB UNet + 0.5 GB text encoder + 0.3 GB VAE

    env = {**os.environ, "PYTHONWARNINGS": "ignore",
           "PATH": f"{os.path.dirname(sys.executable)}{os.pathsep}{os.environ['PATH']}"}
    # the text-to-image students only: three image-conditioned runs at this size add tens of GB of
    # checkpoints and pipeline folders, more than a CI disk holds (measured: the third ran out here)
    r = subprocess.run([sys.executable, "-m", "dvc", "repro", "register"], cwd=ws, capture_output=True, text=True,
                       env=env)
    assert r.returncode == 0, f"dvc repro: {(r.stdout + r.stderr)[-4000:]}"

    manifest = json.loads((ws / "data/latents/manifest.json").read_text())
    assert sum(s["rows"] for s in manifest["shards"]) == 8
    from safetensors import safe_open

    with safe_open(str(ws / "data/latents" / manifest["shards"][0]["file"]), "pt") as f:
        lat = f.get_tensor("latents")
    assert lat.dtype.is_floating_point and lat.element_size() == 2 and tuple(lat.shape[1:]) == (4, 16, 16)

    distilled = json.loads((ws / "metrics/distill.json").read_text())["distill"]
    assert distilled["teacher_unet_params"] == 859_520_964 and 4.5e8 < distilled["student_unet_params"] < 5e8
    m = json.loads((ws / "metrics/evaluate.json").read_text())
    for model in ("teacher", "student", "student_fast", "student_boot"):
        for s in ("seen", "unseen"):
            assert math.isfinite(m[model][s]["fid"]) and math.isfinite(m[model][s]["clip_score"]), (model, s)
    # the students are other networks than the teacher: their FID to the references differs from its
    assert m["student"]["unseen"]["fid"] != m["teacher"]["unseen"]["fid"]
    reg = json.loads((ws / "metrics/register.json").read_text())
    assert reg["version"] == 1 and reg["student_fast"]["version"] == 1 and reg["student_boot"]["version"] == 1
    assert json.loads((ws / "metrics/boot.json").read_text())["boot"]["n_cached_latents"] == 0

    # the registered student is a multi-GB pyfunc model whose pipeline loads and samples
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{ws / 'mlruns/mlflow.db'}")
    uri = f"models:/{profile['registry']['model_name']}@challenger"
    local = mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(ws / "dl"))
    size_gb = sum(f.stat().st_size for f in Path(local).rglob("*") if f.is_file()) / 2**30
    assert size_gb > 1.5, size_gb  # bk_small alone is 482M parameters


def test_sd_random_refuses_a_latent_size_the_vae_cannot_make(tmp_path):
    r = rcd("sd-random", "--out", str(tmp_path / "sdr"), "--latent-size", "12")
    assert r.returncode == 2 and "--latent-size" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "sdr").exists()


def test_random_judges_load_through_the_real_model_paths(tmp_path):
    """The files stand in for clean-fid's Inception and an open_clip checkpoint: the evaluate
    stage's own loaders read them and give Inception's 2048-d pool features and a CLIP score."""
    import torch

    from rcdistill.evaluate.judges import InceptionFeatures, OpenClipScore
    from rcdistill.evaluate.random_judges import write_random_inception, write_random_open_clip

    images = torch.randint(0, 256, (3, 3, 64, 64), dtype=torch.uint8)
    judge = InceptionFeatures(str(write_random_inception(tmp_path, seed=0)))
    feats = judge(images)
    assert feats.shape == (3, 2048)
    # resized to 299 exactly as clean-fid resizes (its PIL bicubic), so FIDs compare with its numbers
    from cleanfid.resize import build_resizer

    seen = []
    judge.model = lambda x: (seen.append(x), torch.zeros(len(x), 2048))[1]
    judge(images)
    expect = build_resizer("clean")(images[1].permute(1, 2, 0).numpy())
    assert seen[0].shape == (3, 3, 299, 299)
    assert torch.allclose(seen[0][1].permute(1, 2, 0), torch.from_numpy(expect).float())
    from safetensors.torch import load_file

    checkpoint = write_random_open_clip(tmp_path, "ViT-B-32", seed=0)
    score = OpenClipScore("ViT-B-32", str(checkpoint))
    saved = load_file(str(checkpoint))  # the judge runs the file's weights, not a fresh initialisation
    loaded = score.model.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in saved.items())
    assert math.isfinite(score(images, ["a cat", "a dog", "a red car"]))
