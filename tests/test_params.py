from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO, rcd


def test_default_params_are_valid():
    r = rcd("--params", str(REPO / "params.yaml"), "params", "check")
    assert r.returncode == 0, r.stderr


def _with(params_path: Path, dotted: str, value) -> None:
    data = yaml.safe_load(params_path.read_text())
    node = data
    *parents, leaf = dotted.split(".")
    for p in parents:
        node = node.setdefault(p, {})
    node[leaf] = value
    params_path.write_text(yaml.safe_dump(data))


@pytest.mark.parametrize(
    "key, value, expect",
    [
        ("sampling.steps", "many", "sampling.steps"),
        ("sampling.guidance_scale", -1.0, "sampling.guidance_scale"),
        ("teacher.gate.shape", 1.5, "teacher.gate.shape"),
        ("teacher.unet.colour_boost", 3, "unknown key 'teacher.unet.colour_boost'"),
        ("world.unseen", ["hexagon"], "unknown concept 'hexagon'"),
        ("world.unseen", ["circle", "square", "triangle", "diamond", "cross"], "nothing would be seen"),
        ("world.image_size", 30, "world.image_size"),
        ("sampling.scheduler", "magic", "sampling.scheduler"),
    ],
)
def test_bad_params_give_one_line_exit_2_and_write_nothing(workdir, key, value, expect):
    _with(workdir / "params.yaml", key, value)
    before = sorted(p.name for p in workdir.iterdir())
    for args in (("params", "check"), ("prompts",)):
        r = rcd(*args)
        assert r.returncode == 2, (r.stdout, r.stderr)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1, r.stderr
        assert key in lines[0] and repr(value) in lines[0] and expect in lines[0], lines[0]
    assert sorted(p.name for p in workdir.iterdir()) == before


def test_error_line_names_key_value_and_allowed(workdir):
    _with(workdir / "params.yaml", "sampling.steps", 0)
    line = rcd("params", "check").stderr.strip()
    assert "sampling.steps" in line and "0" in line and "greater than or equal to 1" in line


def test_missing_and_broken_files(workdir):
    r = rcd("--params", "nope.yaml", "params", "check")
    assert r.returncode == 2 and "nope.yaml: file not found" in r.stderr
    Path("broken.yaml").write_text("world: [unclosed\n")
    r = rcd("--params", "broken.yaml", "params", "check")
    assert r.returncode == 2 and "not valid YAML" in r.stderr


def test_params_rewritten_by_dvc_exp_run_still_load(workdir):
    """`dvc exp run -S` dumps YAML 1.2, leaving `no`/`off` unquoted; PyYAML reads them as false."""
    from rcdistill.config import load_params

    (workdir / "params.yaml").write_text("distill:\n  mixed_precision: no\n  text_embeds: off\n  rc_prob: 0\n")
    p = load_params(workdir / "params.yaml")
    assert (p.distill.mixed_precision, p.distill.text_embeds, p.distill.rc_prob) == ("no", "off", 0.0)
