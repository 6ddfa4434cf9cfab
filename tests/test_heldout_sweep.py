"""benchmarks/heldout_sweep.py: the rows it reads from `dvc exp show --json`, and (slow) a real sweep of
two held-out concepts through `dvc exp run --queue` / `dvc queue start` on a tiny committed project."""
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, make_project

spec = importlib.util.spec_from_file_location("heldout_sweep", REPO / "benchmarks" / "heldout_sweep.py")
sweep = importlib.util.module_from_spec(spec)
spec.loader.exec_module(sweep)


def _exp(teacher: dict, distill: dict) -> dict:
    return {"rev": "x", "name": None, "data": {"metrics": {
        "metrics/teacher.json": {"data": {"teacher": {"passed": True, "unseen": teacher}}},
        "metrics/distill.json": {"data": {"distill": {"rc_prob": 0.5, "unseen": distill, "seen": distill}}}}}}


def test_rows_take_the_held_out_attribute_and_the_share_of_the_gap():
    show = [{"rev": "workspace", "experiments": None},
            {"rev": "base", "experiments": [
                {"name": "sweep-cross-rc", "revs": [{**_exp({"shape": 0.9}, {"shape": 0.8}), "name": "sweep-cross-rc"}]},
                {"name": "sweep-cross-norc", "revs": [{**_exp({"shape": 0.9}, {"shape": 0.5}), "name": "sweep-cross-norc"}]},
                {"name": "sweep-white-rc", "revs": [{**_exp({"colour": 1.0}, {"colour": 0.9}), "name": "sweep-white-rc"}]},
                {"name": "sweep-white-norc", "revs": [{**_exp({"colour": 1.0}, {"colour": 1.0}), "name": "sweep-white-norc"}]},
            ]},
            {"rev": "other-commit", "experiments": [
                {"name": "sweep-circle-rc", "revs": [{**_exp({"shape": 1}, {"shape": 1}), "name": "sweep-circle-rc"}]}]}]
    rows = sweep.sweep_rows(sweep.experiments(show, "base"), ["cross", "white", "circle"])
    cross, white, circle = rows
    assert cross["status"] == "ok" and cross["attribute"] == "shape"
    assert (cross["teacher"], cross["rc"], cross["no_rc"]) == (0.9, 0.8, 0.5)
    assert cross["gap_closed"] == pytest.approx(0.75)
    assert white["attribute"] == "colour" and white["gap_closed"] is None   # no gap to close
    assert circle["status"].startswith("missing")                           # only on another baseline
    table = sweep.markdown(rows)
    assert "| cross | shape | 0.900 | 0.800 | 0.500 | 75% |" in table and "missing" in table
    status = ("Task     Name              Created    Status\n"
              "1ee21d4  sweep-cross-rc    04:27 PM   Success\n"
              "e1f24e4  sweep-cross-norc  04:27 PM   Running\n"
              "da0a34f  sweep-white-rc    04:27 PM   Failed\n\nWorker status: 1 active, 0 idle\n")
    states = sweep.queue_states(status)
    assert states == {"sweep-cross-rc": "Success", "sweep-cross-norc": "Running", "sweep-white-rc": "Failed"}
    cross, white, _ = sweep.sweep_rows(sweep.experiments(show, "base"), ["cross", "white", "circle"], states)
    assert cross["status"] == "sweep-cross-norc running" and white["status"] == "sweep-white-rc failed"


def test_queued_overrides_are_valid_params():
    from rcdistill.config import load_params, parse_set

    for cmd in sweep.queue_commands(["diamond", "yellow"], 0.5):
        p = load_params(REPO / "params.yaml", parse_set([cmd[i + 1] for i, a in enumerate(cmd) if a == "-S"]))
        assert p.world.unseen[0] in ("diamond", "yellow") and p.distill.rc_prob in (0.5, 0.0)
        assert cmd[-1] == "distill" and "--queue" in cmd
    with pytest.raises(SystemExit, match="neither a shape nor a colour"):
        sweep.attribute_of("pentagon")


@pytest.mark.slow
def test_sweep_runs_through_the_dvc_queue(tmp_path):
    ws = make_project(tmp_path / "ws")
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    run = lambda *cmd: subprocess.run(cmd, cwd=ws, env=env, capture_output=True, text=True)  # noqa: E731
    r = run(sys.executable, "-m", "dvc", "repro")
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    for cmd in (["git", "add", "-A"], ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "tiny"]):
        assert run(*cmd).returncode == 0
    out = tmp_path / "sweep"
    r = run(sys.executable, str(REPO / "benchmarks" / "heldout_sweep.py"), "--concepts", "cross", "yellow",
            "--poll-s", "2", "--out", str(out))
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    result = json.loads(out.with_suffix(".json").read_text())
    assert [row["concept"] for row in result["rows"]] == ["cross", "yellow"]
    assert all(row["status"] == "ok" for row in result["rows"]), result["rows"]
    assert all(0 <= row[k] <= 1 for row in result["rows"] for k in ("teacher", "rc", "no_rc"))
    assert result["meta"]["wall_s"] > 0 and out.with_suffix(".png").stat().st_size > 0
    names = run(sys.executable, "-m", "dvc", "exp", "list", "--name-only").stdout.split()
    assert {"sweep-cross-rc", "sweep-cross-norc", "sweep-yellow-rc", "sweep-yellow-norc"} <= set(names)


def test_seeded_rows_carry_the_noise_of_the_difference():
    show = [{"rev": "base", "experiments": [
        {"name": n, "revs": [{**_exp({"shape": 0.95}, {"shape": acc}), "name": n}]}
        for n, acc in (("sweep-cross-rc-s4", 0.90), ("sweep-cross-norc-s4", 0.30),
                       ("sweep-cross-rc-s14", 0.62), ("sweep-cross-norc-s14", 0.60))]}]
    rows = sweep.sweep_rows(sweep.experiments(show, "base"), ["cross"], seeds=(4, 14), n_prompts=640)
    far, near = rows
    assert (far["seed"], near["seed"]) == (4, 14)
    assert far["se_diff"] == pytest.approx(((0.9 * 0.1 + 0.3 * 0.7) / 640) ** 0.5)
    assert not far["within_noise"] and near["within_noise"]       # 0.02 apart is under 2 SE
    assert "not a finding" in sweep.markdown(rows).splitlines()[-1]
    cmds = sweep.queue_commands(["cross"], 0.5, seeds=(4, 14))
    assert [c[4] for c in cmds] == ["sweep-cross-rc-s4", "sweep-cross-norc-s4", "sweep-cross-rc-s14", "sweep-cross-norc-s14"]
    assert all("distill.seed=" + c[4].rsplit("-s", 1)[1] in c for c in cmds)
