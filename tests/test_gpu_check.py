"""benchmarks/gpu_check.sh is prepared on CPU, so a leased GPU runs it unchanged: SMOKE=1 runs
every part (random SD-layout teacher at 8x8 latents and a tenth of SD's widths, throughput settings,
caching, every stage) in minutes; tests/test_sd_random.py runs SD's own widths."""
import json
import os
import subprocess
import sys

import pytest
import yaml

from conftest import REPO
from rcdistill.students import SD_V1_UNET_CONFIG, count_params


@pytest.mark.slow
def test_gpu_check_script_runs_every_part_on_cpu(tmp_path):
    env = {**os.environ, "SMOKE": "1", "WHEELS": "none", "PYTHON": sys.executable, "SCRATCH": str(tmp_path / "s")}
    # GNU timeout signals the script's whole process group (every stage it started), and its output
    # so far still says how far it got
    r = subprocess.run(["timeout", "-k", "30", "780", "bash", "benchmarks/gpu_check.sh", str(tmp_path / "out")],
                       cwd=REPO, env=env, capture_output=True, text=True)
    assert r.returncode != 124, "gpu_check.sh ran past 780 s; its output so far:\n" + (r.stdout + r.stderr)[-4000:]
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    res = json.loads((tmp_path / "out/gpu_check.json").read_text())
    tp = res["throughput"]
    assert [s["name"] for s in tp["settings"]] == ["naive:1", "ours:1"]
    assert all(s["samples_per_s"] > 0 for s in tp["settings"]) and tp["caching"]["latents_per_s"] > 0
    assert tp["flops"]["teacher_forward"] > 0 and tp["flops"]["student_fwd_bwd"] > tp["flops"]["teacher_forward"]
    stages = [s["stage"] for s in res["end_to_end"]["stages"]]
    assert stages == list(yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"])  # every stage, in order
    assert all(s["rc"] == 0 for s in res["end_to_end"]["stages"])
    narrow = {**SD_V1_UNET_CONFIG, "block_out_channels": [32, 64, 128, 128]}  # SD's layout at a tenth of its widths
    assert res["end_to_end"]["metrics"]["distill"]["distill"]["teacher_unet_params"] == count_params(narrow)
    assert not (tmp_path / "s").exists()  # the scratch space (multi-GB) is removed
