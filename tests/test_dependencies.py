"""pyproject.toml declares what the code imports, and imports (or runs) what it declares."""
import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CODE = (REPO / "src/rcdistill", REPO / "flows")
# declared but never imported, and why
NOT_IMPORTED = {
    "dvc": "the pipeline runs through DVC's command line (`python -m dvc`)",
}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _imported_top_levels() -> set[str]:
    local = {p.stem for root in CODE for p in root.rglob("*.py")} | {"rcdistill", "flows"}
    found = set()
    for root in CODE:
        for path in root.rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    found.update(a.name.split(".")[0] for a in node.names)
                elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                    found.add(node.module.split(".")[0])
    return {m for m in found if m not in sys.stdlib_module_names and m not in local}


def test_every_import_is_declared_and_every_declaration_is_used():
    declared = {_norm(re.split(r"[<>=!~\[ ;]", d)[0]) for d in
                tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]}
    dists = packages_distributions()
    imported_dists = set()
    for module in _imported_top_levels():
        names = {_norm(d) for d in dists.get(module, [])}
        assert names & declared, f"`import {module}` (distribution {sorted(names)}) is not in pyproject's dependencies"
        imported_dists |= names & declared
    unused = declared - imported_dists - set(NOT_IMPORTED)
    assert not unused, f"declared and never imported: {sorted(unused)}"
