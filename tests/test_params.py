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
        ("orchestration.timezone", "Mars/Olympus", "not an IANA time zone"),
        ("registry.gate.min", {"unseen.nonsense": 0.5}, "unknown gate metric 'unseen.nonsense'"),
        ("registry.fast_gate.max", {"ms_per_picture": 9.0}, "unknown gate metric 'ms_per_picture'"),
        ("consistency.w_max", -1.0, "consistency.w_max"),
        ("evaluate.steps", {"student_fast": [0]}, "outside 1..1000"),
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


def test_empty_file_and_missing_stage_block_are_refused(workdir):
    Path("empty.yaml").write_text("")
    r = rcd("--params", "empty.yaml", "params", "check")
    assert r.returncode == 2 and "empty.yaml: the file is empty" in r.stderr
    data = yaml.safe_load((workdir / "params.yaml").read_text())
    del data["distill"]
    Path("nodistill.yaml").write_text(yaml.safe_dump(data))
    assert rcd("--params", "nodistill.yaml", "params", "check").returncode == 0  # defaults are valid...
    r = rcd("--params", "nodistill.yaml", "distill")  # ...but a stage does not silently run on them
    assert r.returncode == 2 and "no 'distill:' block" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_gate_metric_names_cover_what_evaluate_writes():
    from rcdistill.config import GATE_METRIC

    for name in ("unseen.shape", "seen.clip_score", "ms_per_image", "unet_step_ratio", "image_time_ratio",
                 "steps.4.unseen.shape", "steps.25.ms_per_image", "seen_swapped.shape", "unseen.edge_f1"):
        assert GATE_METRIC.fullmatch(name), name
    for name in ("unseen.nonsense", "steps.x.unseen.shape", "shape", "seen_other.shape"):
        assert not GATE_METRIC.fullmatch(name), name


def test_params_show_prints_every_key_with_defaults(workdir):
    from rcdistill.config import load_params

    r = rcd("params", "show")
    assert r.returncode == 0, r.stderr
    shown = yaml.safe_load(r.stdout)
    assert shown["distill"]["compile"] is False and shown["cache"]["teacher_dtype"] == "auto"  # defaults filled in
    assert shown["world"]["image_size"] == 32 and shown["distill"]["steps"] == 4                 # the file's values
    (workdir / "shown.yaml").write_text(r.stdout)
    assert load_params(workdir / "shown.yaml") == load_params(workdir / "params.yaml")


@pytest.mark.parametrize("profile", sorted(p.parent.name for p in (REPO / "profiles").glob("*/params.yaml")))
def test_params_use_writes_a_profile_that_dvc_can_track(workdir, profile):
    """A profile leaves out keys it does not change; DVC wants every key a stage tracks, so
    `rcd params use` spells them out (what `dvc repro` of a bare copied profile used to fail on)."""
    from rcdistill.config import load_params

    src = REPO / "profiles" / profile / "params.yaml"
    r = rcd("params", "use", str(src))
    assert r.returncode == 0, r.stderr
    written = yaml.safe_load((workdir / "params.yaml").read_text())
    dvc_keys = [k for stage in yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"].values()
                for k in stage.get("params", [])]
    for dotted in dvc_keys:
        node = written
        for part in dotted.split("."):
            assert part in node, f"{profile}: {dotted} missing"
            node = node[part]
    assert load_params(workdir / "params.yaml") == load_params(src)
    before = (workdir / "params.yaml").read_bytes()
    bad = workdir / "bad.yaml"
    bad.write_text("distill: {rc_prob: 3}\n")
    r = rcd("params", "use", str(bad))
    assert r.returncode == 2 and "distill.rc_prob" in r.stderr
    assert (workdir / "params.yaml").read_bytes() == before  # a bad profile overwrites nothing


def test_params_use_applies_validated_overrides(workdir):
    """`rcd params use PROFILE --set key=value`: the overrides land in the written file, and a bad
    one (unknown key, out of range, no '=') is refused in one line with nothing overwritten."""
    from rcdistill.config import load_params

    src = REPO / "profiles" / "sd-random" / "params.yaml"
    r = rcd("params", "use", str(src), "--set", "distill.steps=700", "--set", "world.unseen=[cross]")
    assert r.returncode == 0, r.stderr
    written = load_params(workdir / "params.yaml")
    assert written.distill.steps == 700 and written.world.unseen == ["cross"]
    assert written.distill.lr == load_params(src).distill.lr            # the rest is the profile's
    before = (workdir / "params.yaml").read_bytes()
    for bad, named in (("distill.rc_prob=3", "distill.rc_prob"), ("distill.nonsense=1", "nonsense"),
                       ("distill.steps", "expected key=value")):
        r = rcd("params", "use", str(src), "--set", bad)
        assert r.returncode == 2 and named in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert (workdir / "params.yaml").read_bytes() == before
