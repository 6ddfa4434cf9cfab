"""Data-parallel distillation under torchrun (2 CPU processes, gloo): every process
draws its own RC batches, only the main process writes checkpoints, a killed run resumes to the
weights of an uninterrupted one, and the student loads."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file


def _launch(project: Path, *extra: str) -> subprocess.CompletedProcess:
    # torchrun, not `accelerate launch --cpu`: accelerate's launcher starts a single process for --cpu
    # (its multi-process CPU path is MPI), which once let this test pass without any data parallelism
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "rcdistill.cli", "distill", *extra]
    return subprocess.run(cmd, cwd=project, env=env, capture_output=True, text=True, timeout=900)


def _copy(tiny_project: Path, dest: Path) -> Path:
    shutil.copytree(tiny_project, dest, ignore=shutil.ignore_patterns("mlruns", "outputs", "models"))
    shutil.copytree(tiny_project / "models/teacher", dest / "models/teacher")
    shutil.copytree(tiny_project / "models/evaluators", dest / "models/evaluators")
    return dest


def _student(project: Path) -> dict[str, torch.Tensor]:
    return load_file(next((project / "models/student/unet").glob("*.safetensors")))


@pytest.mark.slow
def test_two_process_distillation_resumes_to_the_uninterrupted_weights(tiny_project, tmp_path):
    straight = _copy(tiny_project, tmp_path / "straight")
    r = _launch(straight)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    assert "distill: 2 process(es)" in r.stdout, (r.stdout + r.stderr)[-3000:]
    # the student is written: its checkpoints could only resume a finished run, so they are gone
    assert not list((straight / "outputs/distill").glob("*checkpoint-*"))

    killed = _copy(tiny_project, tmp_path / "killed")
    r = _launch(killed, "--stop-after", "2")
    assert r.returncode == 0 and "stopped after step 2" in r.stdout, (r.stdout + r.stderr)[-3000:]
    assert not (killed / "models/student").exists()
    # one process wrote the checkpoint (model, optimizer, EMA, the main process's RNG states), atomically
    ckpts = sorted(p.name for p in (killed / "outputs/distill").glob("*checkpoint-*"))
    assert ckpts == ["checkpoint-2"], ckpts
    r = _launch(killed)
    assert r.returncode == 0 and "resuming from" in (r.stdout + r.stderr), (r.stdout + r.stderr)[-3000:]
    a, b = _student(straight), _student(killed)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

    # data parallel for real: the 2-process student differs from a 1-process one with the same params
    single = _copy(tiny_project, tmp_path / "single")
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}  # as the launch: only the process count differs
    r = subprocess.run([sys.executable, "-m", "rcdistill.cli", "distill"], cwd=single, env=env,
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "distill: 1 process(es)" in r.stdout, (r.stdout + r.stderr)[-3000:]
    c = _student(single)
    assert any(not torch.equal(a[k], c[k]) for k in a)
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(straight / "models/student", local_files_only=True)
    assert pipe.unet.mid_block is None
    assert yaml.safe_load((straight / "params.yaml").read_text())["distill"]["steps"] == 4
