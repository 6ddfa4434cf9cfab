"""`rcd` as a command-line tool: version, help everywhere, --params anywhere, distinct exit codes, JSON."""
import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rcdistill import cli
from tests.conftest import rcd


def _subparsers(parser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield name, sub
                yield from ((f"{name} {n}", s) for n, s in _subparsers(sub))


def test_version_and_bare_rcd_print_help(tmp_path):
    r = rcd("--version", cwd=tmp_path)
    assert r.returncode == 0 and r.stdout.startswith("rcd (rcdistill) ")
    m = subprocess.run([sys.executable, "-m", "rcdistill", "--version"], capture_output=True, text=True, timeout=120)
    assert m.returncode == 0 and m.stdout == r.stdout
    bare = rcd(cwd=tmp_path)
    assert bare.returncode == 0 and "usage: rcd" in bare.stdout and "exit codes:" in bare.stdout


def test_every_subcommand_and_option_explains_itself():
    parser = cli.build_parser()
    subs = dict(_subparsers(parser))
    assert {"distill", "promote", "params use", "sample", "dvc-yaml"} <= set(subs)
    for name, sub in subs.items():
        assert sub.description or any(isinstance(a, argparse._SubParsersAction) for a in sub._actions), name
        for action in sub._actions:
            if action.dest != "help" and not isinstance(action, argparse._SubParsersAction):
                assert action.help, f"rcd {name} {'/'.join(action.option_strings) or action.dest}: no help"
    assert "Reads params: distill" in subs["distill"].description and "metrics/distill.json" in subs["distill"].description


def test_params_is_accepted_after_the_subcommand(tmp_path):
    (tmp_path / "bad.yaml").write_text("distill: {rc_prob: 3}\n")
    for args in (("--params", "bad.yaml", "params", "check"), ("params", "check", "--params", "bad.yaml")):
        r = rcd(*args, cwd=tmp_path)
        assert r.returncode == 2 and r.stderr.startswith("error: bad.yaml:") and "distill.rc_prob" in r.stderr, args


def test_a_crash_has_its_own_exit_code(monkeypatch, capsys):
    def crash(args):
        raise RuntimeError("something broke")

    monkeypatch.setattr(cli, "cmd_summary", crash)
    assert cli.main(["summary"]) == cli.CRASH_EXIT_CODE == 4
    assert "RuntimeError: something broke" in capsys.readouterr().err


def test_json_output_for_scripts(tmp_path):
    r = rcd("students", "--sd-v1", "--json", cwd=tmp_path)
    data = json.loads(r.stdout)
    assert data["teacher_params"] == 859_520_964 and {s["name"] for s in data["students"]} >= {"bk_small", "c_micro"}
    r = rcd("summary", "--json", cwd=tmp_path)
    assert json.loads(r.stdout) == {"evaluate": None, "register": None}


@pytest.mark.parametrize("code", [1, 2, 3])
def test_exit_codes_are_documented(code):
    assert f"  {code}  " in cli.EXIT_CODES


def test_the_flow_script_exits_like_rcd_on_a_bad_set(tmp_path):
    from tests.conftest import REPO

    r = subprocess.run([sys.executable, str(REPO / "flows/rcdistill_flow.py"), "--set", "distill.steps"],
                       capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert r.returncode == 2 and r.stderr.strip().splitlines()[-1].startswith("error: --set 'distill.steps'"), r.stderr


def test_progress_bars_follow_tqdm_mininterval():
    """Stage bars pass no interval of their own, so TQDM_MININTERVAL (the Prefect flow sets 5)
    decides; without it rcdistill's default of 2 s keeps logs short."""
    import re

    code = "import io, rcdistill; from tqdm import tqdm; print(tqdm(range(1), file=io.StringIO()).mininterval)"
    env = {k: v for k, v in os.environ.items() if k != "TQDM_MININTERVAL"}
    for value, expect in ((None, "2.0"), ("5", "5.0")):
        run_env = env if value is None else {**env, "TQDM_MININTERVAL": value}
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=run_env, timeout=120)
        assert out.stdout.strip().splitlines()[-1] == expect, out.stderr
    src = Path(__file__).resolve().parents[1] / "src"
    assert not [p for p in src.rglob("*.py") if re.search(r"mininterval\s*=", p.read_text())]
