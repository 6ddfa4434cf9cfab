"""docs/results.md and README's generated blocks are what benchmarks/results_doc.py writes from the committed files."""
import re
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _check(cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "benchmarks/results_doc.py", "--check"], cwd=cwd, capture_output=True,
                          text=True, timeout=120)


def test_committed_results_and_readme_blocks_are_generated():
    r = _check(REPO)
    assert r.returncode == 0, r.stdout + r.stderr


def test_a_typed_number_is_caught(tmp_path):
    for name in ("benchmarks", "docs", "metrics"):
        shutil.copytree(REPO / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("README.md", "params.yaml"):
        shutil.copy(REPO / name, tmp_path / name)
    assert _check(tmp_path).returncode == 0
    readme = (tmp_path / "README.md").read_text()
    # hand-edit the first measured value of the generated headlines block (whatever it is today)
    block = readme.index("<!-- generated: headlines")
    m = re.compile(r"\| (\d)\.(\d{3}) ± ").search(readme, block)
    typed = f"| {(int(m.group(1)) + 1) % 10}.{m.group(2)} ± "
    (tmp_path / "README.md").write_text(readme[:m.start()] + typed + readme[m.end():])
    assert (tmp_path / "README.md").read_text() != readme
    r = _check(tmp_path)
    assert r.returncode == 1 and "README.md" in r.stderr
