import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import rcdistill  # noqa: F401  (offline env + torchvision fix before anything else)

REPO = Path(__file__).resolve().parents[1]

TINY = {
    "world": {"image_size": 32, "unseen": ["triangle"]},
    "prompts": {"cache_pool_size": 32, "eval_per_set": 8},
    "sampling": {"steps": 4, "guidance_scale": 3.0, "batch_size": 8},
    "evaluators": {
        "classifier": {"train_images": 512, "steps": 3, "batch_size": 32, "eval_images": 64},
        "clip": {"embed_dim": 16, "width": 32, "layers": 1, "steps": 3, "batch_size": 16, "eval_images": 64},
    },
    "teacher": {
        "vae": {"block_out_channels": [16, 16], "latent_channels": 4, "steps": 3, "batch_size": 8},
        "text_encoder": {"hidden_size": 32, "layers": 1, "heads": 2, "steps": 3, "batch_size": 16},
        "unet": {"block_out_channels": [32, 32], "layers_per_block": 2, "train_images": 256, "steps": 3,
                 "batch_size": 8},
        "gate": {"shape": 0.0, "colour": 0.0, "eval_per_set": 8},
    },
}


def deep_update(base: dict, extra: dict) -> dict:
    out = dict(base)
    for k, v in extra.items():
        out[k] = deep_update(out.get(k, {}), v) if isinstance(v, dict) else v
    return out


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """An empty project folder with tiny params, as the current directory."""
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(TINY))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def rcd(*args, cwd=None) -> subprocess.CompletedProcess:
    """Run the real `rcd` command line."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run([sys.executable, "-m", "rcdistill.cli", *args], capture_output=True, text=True,
                          cwd=cwd, env=env)
