"""benchmarks/gpu_check.sh is prepared on CPU, so a leased GPU runs it unchanged: SMOKE=1 runs
every part (random SD teacher at 8x8 latents, throughput settings, caching, every stage) in minutes."""
import json
import os
import subprocess
import sys

import pytest

from conftest import REPO


@pytest.mark.slow
def test_gpu_check_script_runs_every_part_on_cpu(tmp_path):
    env = {**os.environ, "SMOKE": "1", "WHEELS": "none", "PYTHON": sys.executable, "SCRATCH": str(tmp_path / "s")}
    r = subprocess.run(["bash", "benchmarks/gpu_check.sh", str(tmp_path / "out")], cwd=REPO, env=env,
                       capture_output=True, text=True)
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    res = json.loads((tmp_path / "out/gpu_check.json").read_text())
    tp = res["throughput"]
    assert [s["name"] for s in tp["settings"]] == ["naive:1", "ours:1"]
    assert all(s["samples_per_s"] > 0 for s in tp["settings"]) and tp["caching"]["latents_per_s"] > 0
    assert tp["flops"]["teacher_forward"] > 0 and tp["flops"]["student_fwd_bwd"] > tp["flops"]["teacher_forward"]
    stages = [s["stage"] for s in res["end_to_end"]["stages"]]
    assert stages[-1] == "register" and all(s["rc"] == 0 for s in res["end_to_end"]["stages"])
    assert res["end_to_end"]["metrics"]["distill"]["distill"]["teacher_unet_params"] == 859_520_964
    assert not (tmp_path / "s").exists()  # the scratch space (multi-GB) is removed
