"""docs/results.md and README's generated blocks are what benchmarks/results_doc.py writes from the committed files.

The check runs on a copy: the files a pipeline run rewrites (metrics/, params.yaml under `dvc exp run`)
come from git's HEAD, so a user's own `./scripts/repro.sh` (new timings in metrics/) cannot make it fail;
the generator, docs and README come from the working tree, so an edit to them is checked before it is committed.
"""
import io
import json
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PIPELINE_WRITTEN = ("metrics", "params.yaml")


def _check(cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "benchmarks/results_doc.py", "--check"], cwd=cwd, capture_output=True,
                          text=True, timeout=120)


def _committed(repo: Path, paths: tuple[str, ...], dest: Path) -> bool:
    """Extract `paths` as HEAD has them into dest; False when repo is no git checkout (e.g. a source tarball)."""
    r = subprocess.run(["git", "archive", "--format=tar", "HEAD", *paths], cwd=repo, capture_output=True, timeout=60)
    if r.returncode != 0:
        return False
    shutil.rmtree(dest / "metrics", ignore_errors=True)
    with tarfile.open(fileobj=io.BytesIO(r.stdout)) as tar:
        tar.extractall(dest, filter="data")
    return True


def copy_for_check(repo: Path, dest: Path) -> Path:
    for name in ("benchmarks", "docs", "metrics", "src"):
        shutil.copytree(repo / name, dest / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("README.md", "params.yaml"):
        shutil.copy(repo / name, dest / name)
    _committed(repo, PIPELINE_WRITTEN, dest)
    return dest


@pytest.fixture
def docs_copy(tmp_path) -> Path:
    return copy_for_check(REPO, tmp_path / "copy")


def test_committed_results_and_readme_blocks_are_generated(docs_copy):
    r = _check(docs_copy)
    assert r.returncode == 0, r.stdout + r.stderr


def test_a_users_own_repro_does_not_fail_the_check(tmp_path):
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True, timeout=120)
    # what a user's rerun does to the workspace: measured values in metrics/ move
    teacher = clone / "metrics" / "teacher.json"
    data = json.loads(teacher.read_text())
    data["teacher"]["seen"]["shape"] = 0.5
    teacher.write_text(json.dumps(data))
    assert _check(clone).returncode == 1  # checked against the workspace, the docs look out of date
    r = _check(copy_for_check(clone, tmp_path / "copy"))
    assert r.returncode == 0, r.stdout + r.stderr


def test_a_typed_number_is_caught(docs_copy):
    assert _check(docs_copy).returncode == 0
    readme = (docs_copy / "README.md").read_text()
    # hand-edit the first measured value of the generated headlines block (whatever it is today)
    block = readme.index("<!-- generated: headlines")
    m = re.compile(r"\| (\d)\.(\d{3}) ± ").search(readme, block)
    typed = f"| {(int(m.group(1)) + 1) % 10}.{m.group(2)} ± "
    (docs_copy / "README.md").write_text(readme[:m.start()] + typed + readme[m.end():])
    assert (docs_copy / "README.md").read_text() != readme
    r = _check(docs_copy)
    assert r.returncode == 1 and "README.md" in r.stderr
