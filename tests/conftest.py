import os
import shutil
import subprocess
import sys
from pathlib import Path

# An xdist worker shares the cores with the others: torch (here and in the stages it starts) gets
# its share of them, read before torch is imported, instead of every worker spinning on all cores.
if workers := int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", 0)):
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // workers)))

import pytest  # noqa: E402
import yaml  # noqa: E402

import rcdistill  # noqa: E402,F401  (offline env + torchvision fix before anything else)

REPO = Path(__file__).resolve().parents[1]

TINY = {
    "world": {"image_size": 32, "unseen": ["triangle"]},
    "prompts": {"cache_pool_size": 32, "eval_per_set": 8},
    "sampling": {"steps": 4, "guidance_scale": 3.0, "batch_size": 8},
    "evaluators": {
        "classifier": {"train_images": 512, "steps": 3, "batch_size": 32, "eval_images": 64},
        "clip": {"embed_dim": 16, "width": 32, "layers": 1, "steps": 3, "batch_size": 16, "eval_images": 64},
        "gate": {"classifier": 0.0, "clip_zero_shot": 0.0},   # 3-step judges read nothing
    },
    "teacher": {
        "vae": {"block_out_channels": [16, 16], "latent_channels": 4, "steps": 3, "batch_size": 8},
        "text_encoder": {"hidden_size": 32, "layers": 1, "heads": 2, "steps": 3, "batch_size": 16},
        "unet": {"block_out_channels": [32, 32], "layers_per_block": 2, "train_images": 256, "steps": 3,
                 "batch_size": 8},
        "checks": {"vae_recon": 0.0, "text": 0.0, "cond_uncond_gap": 0.0},
        "gate": {"shape": 0.0, "colour": 0.0, "eval_per_set": 8},
    },
    "cache": {"shard_size": 8},
    "distill": {"steps": 4, "batch_size": 4, "checkpoint_every": 2, "warmup_steps": 1, "log_every": 1},
    "consistency": {"steps": 3, "batch_size": 4, "checkpoint_every": 2, "warmup_steps": 1, "log_every": 1,
                    "num_ddim_timesteps": 10, "time_cond_proj_dim": 16, "default_steps": 2},
    "evaluate": {"eval_per_set": 8, "reference_per_prompt": 2, "kid_subsets": 10, "latency_repeats": 1,
                 "diversity_prompts": 4, "diversity_seeds": 2,
                 "grid_prompts": 4, "steps": {"teacher": [4, 2], "student": [4, 2], "student_fast": [1, 2],
                                              "student_boot": [1]}},
    "boot": {"steps": 4, "batch_size": 4, "checkpoint_every": 2, "warmup_steps": 1, "log_every": 1, "num_grid_steps": 10},
    "codi": {"train": {"batch_size": 4, "warmup_steps": 1, "log_every": 1, "checkpoint_every": 2},
             "method": {"num_ddim_timesteps": 10, "embedding_channels": 8},
             "reference": {"steps": 3, "default_steps": 4}, "full": {"steps": 3, "default_steps": 2},
             "adapter": {"steps": 3, "default_steps": 2}, "eval_per_set": 8,
             "eval_steps": {"reference": [4], "full": [1, 2], "adapter": [2]}},
    "registry": {"gate": {"min": {}, "max": {}, "vs_champion": {}}, "fast_gate": {"min": {}, "max": {}, "vs_champion": {}},
                 "boot_gate": {"min": {}, "max": {}, "vs_champion": {}},
                 "codi_gate": {"min": {}, "max": {}, "vs_champion": {}}},
}


# Tests that share an in-process session fixture run on one xdist worker: the fixture's name is the
# group. The flow tests share one ephemeral Prefect server: a group of their own. The tiny project
# needs no group: it is built once per session for every worker (see tiny_project).
SHARED_FIXTURES = ("classifier",)
MAX_WORKERS = 4


def pytest_xdist_auto_num_workers(config):
    """`-n auto`: one worker per core, at most MAX_WORKERS; the slow pass runs in one process (its
    SD-sized tests hold several GB each)."""
    expr = config.option.markexpr or ""
    if "slow" in expr and "not slow" not in expr:
        return 0
    return min(MAX_WORKERS, os.cpu_count() or 1)


def pytest_itemcollected(item):
    """Mark the group as each test is collected: xdist reads the marks in its own modifyitems hook."""
    group = next((f for f in SHARED_FIXTURES if f in item.fixturenames), None)
    if item.module.__name__.endswith("test_flows"):
        group = "flows"
    if group:
        item.add_marker(pytest.mark.xdist_group(group))


def deep_update(base: dict, extra: dict) -> dict:
    out = dict(base)
    for k, v in extra.items():
        out[k] = deep_update(out.get(k, {}), v) if isinstance(v, dict) and v else v  # {} replaces
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
                          cwd=cwd, env=env, timeout=600)


def build_tiny_pipeline(folder: Path, seed: int = 0, prediction_type: str = "epsilon") -> Path:
    """A random-init but real StableDiffusionPipeline folder (3-stage UNet, 2 layers per block)."""
    import torch

    from rcdistill.config import TextEncoderParams, UnetParams, VaeParams
    from rcdistill.teacher.pipeline import assemble
    from rcdistill.teacher.text_encoder import build_text_encoder
    from rcdistill.teacher.tokenizer import build_tokenizer
    from rcdistill.teacher.unet import build_unet
    from rcdistill.teacher.vae import build_vae

    torch.manual_seed(seed)
    tok = build_tokenizer(16)
    te = build_text_encoder(TextEncoderParams(hidden_size=32, layers=1, heads=2), tok)
    vae = build_vae(VaeParams(block_out_channels=[16, 16, 16], latent_channels=4), 32)
    unet = build_unet(UnetParams(block_out_channels=[32, 32, 32], layers_per_block=2), 8, 4, 32)
    pipe = assemble(vae, te, tok, unet)
    if prediction_type != "epsilon":
        pipe.scheduler.register_to_config(prediction_type=prediction_type)
    pipe.save_pretrained(folder, safe_serialization=True)
    return folder


@pytest.fixture(scope="session")
def tiny_pipeline(tmp_path_factory) -> Path:
    return build_tiny_pipeline(tmp_path_factory.mktemp("tiny_pipe") / "teacher")


def make_project(folder: Path, extra: dict | None = None) -> Path:
    """A DVC workspace (git + dvc init) with the repo's dvc.yaml and src/ (stage deps) and tiny params."""
    folder.mkdir(parents=True)
    shutil.copy(REPO / "dvc.yaml", folder / "dvc.yaml")
    shutil.copytree(REPO / "src", folder / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    base = yaml.safe_load((REPO / "params.yaml").read_text())  # DVC wants every params key it tracks
    params = deep_update(base, deep_update(TINY, {"orchestration": {"retries": 1, "retry_delay_s": 0}}))
    params = deep_update(params, extra or {})
    (folder / "params.yaml").write_text("# tiny params for the tests\n" + yaml.safe_dump(params, sort_keys=False)
                                        .replace("steps: 4\n  batch_size: 4", "steps: 4  # distill steps\n  batch_size: 4", 1))
    subprocess.run(["git", "init", "-q"], cwd=folder, check=True)
    subprocess.run([sys.executable, "-m", "dvc", "init", "-q"], cwd=folder, check=True)
    # a first commit, as a real project has one: `dvc exp save` / `dvc exp run` need a HEAD
    git = ["git", "-c", "user.name=rcd-tests", "-c", "user.email=tests@rcdistill.invalid"]
    subprocess.run([*git, "add", "-A"], cwd=folder, check=True)
    subprocess.run([*git, "commit", "-q", "-m", "tiny project"], cwd=folder, check=True)
    return folder


def _shared_tmp(tmp_path_factory) -> Path:
    """The temp folder every xdist worker of this session sees (the workers' parent)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@pytest.fixture(scope="session")
def tiny_project(tmp_path_factory) -> Path:
    """A DVC workspace where `dvc repro` ran every real stage once on the tiny params. Built once per
    session (the first worker to ask builds it under a lock, the others wait) and never touched;
    each worker gets its own copy, so tests on different workers may change theirs."""
    from filelock import FileLock

    shared = _shared_tmp(tmp_path_factory)
    built = shared / "tiny_project_build" / "ws"
    with FileLock(str(shared / "tiny_project_build.lock")):
        if not (built.parent / "done").exists():
            shutil.rmtree(built.parent, ignore_errors=True)  # a build that died half-way
            make_project(built)
            env = {**os.environ, "PYTHONWARNINGS": "ignore",
                   "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
            r = subprocess.run([sys.executable, "-m", "dvc", "repro"], cwd=built, capture_output=True, text=True,
                               env=env, timeout=900)
            assert r.returncode == 0, f"dvc repro: {(r.stdout + r.stderr)[-3000:]}"
            (built.parent / "done").touch()
    # the copy's MLflow experiments keep their artifact root in the build (an absolute path): runs
    # logged from a copy add folders there, each under its own run id
    root = tmp_path_factory.mktemp("proj") / "ws"
    shutil.copytree(built, root, symlinks=True)
    return root


@pytest.fixture(scope="session")
def classifier(tmp_path_factory):
    """A world classifier trained briefly, saved and loaded back: (model, accuracy on fresh renders)."""
    from rcdistill.config import ClassifierParams
    from rcdistill.evaluators.classifier import load_classifier, save_classifier, train_classifier

    cfg = ClassifierParams(train_images=6000, steps=250, batch_size=64, lr=3e-3, eval_images=500)
    model, acc = train_classifier(cfg, seed=0, image_size=32)
    folder = tmp_path_factory.mktemp("clf")
    save_classifier(model, folder)
    return load_classifier(folder), acc
