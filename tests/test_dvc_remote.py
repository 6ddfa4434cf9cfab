"""The repository's default DVC remote: `dvc push` in one clone, `dvc pull` in a fresh one gives the same data."""
import filecmp
import os
import shutil
import subprocess
import sys
from pathlib import Path

from conftest import REPO, make_project

GIT = ["git", "-c", "user.name=rcd-tests", "-c", "user.email=tests@rcdistill.invalid"]


def _dvc(ws: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    r = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=ws, capture_output=True, text=True, env=env,
                       timeout=600)
    assert r.returncode == 0, f"dvc {' '.join(args)}: {(r.stdout + r.stderr)[-2000:]}"
    return r


def test_push_then_pull_round_trips_a_fresh_clone(tmp_path):
    ws = make_project(tmp_path / "ws")
    shutil.copy(REPO / ".dvc" / "config", ws / ".dvc" / "config")  # the committed default remote
    _dvc(ws, "repro", "prompts")
    _dvc(ws, "push")
    storage = tmp_path / "rcdistill-dvc-storage"  # beside the repository, as .dvc/config says
    assert storage.is_dir() and any(storage.rglob("*"))
    subprocess.run([*GIT, "add", "-A"], cwd=ws, check=True)
    subprocess.run([*GIT, "commit", "-q", "-m", "prompts"], cwd=ws, check=True)

    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(ws), str(clone)], check=True)
    assert not (clone / "data" / "prompts").exists()
    _dvc(clone, "pull", "prompts")  # the one stage this project ran
    cmp = filecmp.dircmp(ws / "data" / "prompts", clone / "data" / "prompts")
    assert cmp.left_list == cmp.right_list and cmp.left_list
    assert not filecmp.cmpfiles(ws / "data" / "prompts", clone / "data" / "prompts", cmp.common_files, shallow=False)[1]
    assert "up to date" in _dvc(clone, "status", "prompts").stdout
