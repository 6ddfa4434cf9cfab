"""The stage table is the pipeline: dvc.yaml is generated from it and declares every module each stage runs."""
import ast
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from rcdistill.code_deps import closure, closure_files
from rcdistill.dvc_yaml import NOT_DEPS, check_dvc_yaml, render
from rcdistill.roster import MODEL_NAMES, ROSTER, STUDENTS
from rcdistill.stage_table import FLOW_STAGES, STAGES

REPO = Path(__file__).resolve().parents[1]
DVC_YAML = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]


def _listed(entries) -> list[str]:
    return [e if isinstance(e, str) else next(iter(e)) for e in entries or []]


def test_committed_dvc_yaml_is_what_the_table_writes():
    assert check_dvc_yaml(REPO / "dvc.yaml") == "", "run `rcd dvc-yaml` and commit dvc.yaml"
    assert (REPO / "dvc.yaml").read_text() == render()


@pytest.mark.parametrize("row", STAGES, ids=lambda r: r.name)
def test_dvc_yaml_declares_each_stage_as_the_table_does(row):
    """Read from the committed file (not from render): params, outs and every module of the stage's
    import closure (less the explained NOT_DEPS) are declared."""
    d = DVC_YAML[row.name]
    deps = set(_listed(d.get("deps")))
    missing = set(closure_files(row.entry, REPO)) - NOT_DEPS - deps
    assert not missing, f"{row.name}: dvc.yaml misses modules it imports: {sorted(missing)}"
    assert set(row.deps) <= deps
    assert list(d.get("params", [])) == list(row.params)
    assert _listed(d.get("outs")) == list(row.outs)
    assert _listed(d.get("metrics")) == list(row.metrics) and _listed(d.get("plots")) == list(row.plots)
    assert d["cmd"] == row.command


def test_closure_follows_lazy_and_package_imports(tmp_path):
    pkg = tmp_path / "rcdistill"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "entry.py").write_text("from .sub import deep\n")
    (pkg / "sub" / "deep.py").write_text("def f():\n    from ..lazy import x  # only when called\n    return x\n")
    (pkg / "lazy.py").write_text("import torch\nx = 1\n")
    (pkg / "unused.py").write_text("")
    assert closure("rcdistill.entry", tmp_path) == ("rcdistill", "rcdistill.entry", "rcdistill.lazy", "rcdistill.sub",
                                                    "rcdistill.sub.deep")


def test_every_stage_has_a_thin_module_and_no_library_imports_a_stage():
    stages_dir = REPO / "src/rcdistill/stages"
    assert {p.stem for p in stages_dir.glob("*.py")} - {"__init__"} == {s.name for s in STAGES}
    for row in STAGES:
        tree = ast.parse((stages_dir / f"{row.name}.py").read_text())
        assert any(isinstance(n, ast.FunctionDef) and n.name == "run" for n in tree.body), row.name
    src = REPO / "src"
    for path in (src / "rcdistill").rglob("*.py"):
        module = ".".join(path.relative_to(src).with_suffix("").parts).removesuffix(".__init__")
        if module.startswith("rcdistill.stages") or module == "rcdistill.cli":
            continue
        assert not [m for m in closure(module) if m.startswith("rcdistill.stages")], module


def test_roster_drives_the_plots_and_the_flow_stages():
    assert FLOW_STAGES[0] == "cache_latents" and FLOW_STAGES[-1] == STAGES[-1].name
    assert [m.name for m in ROSTER][0] == "teacher" and all(m.registry_name_key for m in STUDENTS)
    plots = yaml.safe_load((REPO / "dvc.yaml").read_text())["plots"]
    concept = next(p for p in plots if "Concept accuracy, teacher vs students" in p)
    assert list(concept.values())[0]["y"]["plots/concept_accuracy.csv"] == list(MODEL_NAMES)
    stage_names = {s.name for s in STAGES}
    for m in ROSTER:
        assert m.stage in stage_names and set(m.lineage) <= stage_names, m.name


def _fake_outputs(ws: Path) -> None:
    """Every out and data dep of dvc.yaml as a small file, so `dvc commit` can record the pipeline."""
    params = yaml.safe_load((ws / "params.yaml").read_text())

    def resolve(path: str) -> Path:
        while "${" in path:
            a = path.index("${")
            b = path.index("}", a)
            value = params
            for part in path[a + 2:b].split("."):
                value = value[part]
            path = path[:a] + str(value) + path[b + 1:]
        return ws / path

    for row in STAGES:
        for out in row.outs:
            folder = resolve(out)
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "x.txt").write_text(row.name)
        for m in row.metrics:
            resolve(m).parent.mkdir(parents=True, exist_ok=True)
            resolve(m).write_text(json.dumps({row.name: 1}))
        for p in row.plots:
            resolve(p).parent.mkdir(parents=True, exist_ok=True)
            resolve(p).write_text("step\n")
    for row in STAGES:
        for dep in row.deps:
            path = resolve(dep)
            if not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text("{}")


def test_dvc_reruns_exactly_the_stages_whose_code_changed(tmp_path):
    """A module deep in two closures (distill/data.py: stages/distill -> distill/kd -> data, and
    stages/consistency -> distill/consistency -> data) changes: DVC reports exactly the stages that
    import it, and no other (not the KD-only taps' neighbours, not the teacher)."""
    ws = tmp_path / "ws"
    ws.mkdir()
    for name in ("dvc.yaml", "params.yaml"):
        shutil.copy(REPO / name, ws / name)
    shutil.copytree(REPO / "src", ws / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    dvc = [sys.executable, "-m", "dvc"]
    subprocess.run(["git", "init", "-q"], cwd=ws, check=True)
    subprocess.run(dvc + ["init", "-q"], cwd=ws, check=True)
    _fake_outputs(ws)
    r = subprocess.run(dvc + ["commit", "-f", "-q"], cwd=ws, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr

    def stale() -> set[str]:
        out = subprocess.run(dvc + ["status", "--json"], cwd=ws, capture_output=True, text=True, timeout=300)
        return set(json.loads(out.stdout or "{}"))

    assert stale() == set()
    deep = "rcdistill.distill.data"
    (ws / "src/rcdistill/distill/data.py").open("a").write("\n# a change\n")
    expected = {s.name for s in STAGES if deep in closure(s.entry)}
    assert {"distill", "consistency"} <= expected and "prompts" not in expected and "teacher" not in expected
    assert stale() == expected


def test_a_stage_reads_only_the_params_its_row_declares():
    """The CLI hands each stage a view of the params limited to what dvc.yaml tracks for it (its
    params and the ${...} of its paths); every stage of the tiny end-to-end run goes through it."""
    from rcdistill.config import Params
    from rcdistill.errors import ParamsError
    from rcdistill.params_view import stage_params
    from rcdistill.stage_table import BY_NAME

    view = stage_params(Params(), BY_NAME["distill"])
    assert view.distill.steps == Params().distill.steps            # a declared section
    assert view.teacher.gate.eval_per_set == Params().teacher.gate.eval_per_set  # a declared key
    assert view.cache.out_dir == Params().cache.out_dir            # ${cache.out_dir} in its deps
    assert view.tracking.uri == Params().tracking.uri              # where runs go: every stage
    for read in (lambda: view.evaluate, lambda: view.teacher.unet, lambda: view.cache.shard_size):
        with pytest.raises(ParamsError, match="stage distill reads params key"):
            read()
    dumped = view.model_dump()  # what its MLflow run logs: the declared keys only
    assert dumped["teacher"] == {"path": Params().teacher.path, "gate": {"eval_per_set": Params().teacher.gate.eval_per_set}}
    assert "evaluate" not in dumped and dumped["cache"] == {"out_dir": Params().cache.out_dir}
