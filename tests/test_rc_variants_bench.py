"""benchmarks/rc_variants.py: the experiments it queues and the rows it reads back against the sweep."""
import importlib.util
import sys

import pytest

from conftest import REPO

sys.path.insert(0, str(REPO / "benchmarks"))
spec = importlib.util.spec_from_file_location("rc_variants", REPO / "benchmarks" / "rc_variants.py")
variants = importlib.util.module_from_spec(spec)
spec.loader.exec_module(variants)


def test_queued_runs_carry_the_variant_switches_concept_and_seed():
    cmds = variants.queue_commands(["t_min_600", "guided"], ["circle"], [4, 14])
    assert len(cmds) == 4
    first = cmds[0]
    assert first[:5] == ["exp", "run", "--queue", "-n", "var-t_min_600-circle-s4"] and first[-1] == "distill"
    assert "world.unseen=[circle]" in first and "distill.seed=4" in first and "distill.unpaired.t_min=600" in first
    assert "distill.unpaired.target=guided" in cmds[2]


def test_every_variant_names_real_params():
    from rcdistill.config import Params, load_params

    base = load_params(str(REPO / "params.yaml")).model_dump()
    for name, switches in variants.VARIANTS.items():
        params = base
        for switch in switches:
            key, value = switch.split("=")
            section = params
            *path, leaf = key.split(".")
            for part in path:
                section = section[part]
            assert leaf in section, (name, key)
            section[leaf] = type(section[leaf])(value) if not isinstance(section[leaf], str) else value
        Params.model_validate(params)


def test_rows_compare_with_the_sweeps_row_for_the_same_concept_and_seed():
    name = variants.exp_name("weight_3", "circle", 4)
    exps = {name: {"metrics": {"metrics/distill.json": {"data": {"distill": {
        "unseen": {"shape": 0.95}, "seen": {"shape": 0.99}}}}}}}
    ref = {("circle", 4): {"teacher": 1.0, "rc": 0.9, "no_rc": 0.8, "rc_seen": 0.98}}
    rows = variants.variant_rows(exps, {variants.exp_name("weight_3", "circle", 14): "Failed"}, ["weight_3"],
                                 ["circle"], [4, 14, 24], ref, 640)
    ok, missing = rows  # seed 24 was never queued: no row
    assert ok["status"] == "ok" and ok["gap_closed"] == pytest.approx(0.75)
    assert ok["vs_paper"] == pytest.approx(0.05) and ok["finding"]  # 0.05 vs SE ~0.014
    assert missing["status"] == "failed"
    assert "| weight_3 | circle | 4 |" in variants.markdown(rows, 640)
