"""Record a finished flow run as a DVC experiment, so `dvc exp show` lists it beside `dvc exp run`s."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path


def experiment_name(flow_run_name: str) -> str:
    """`prefect-<flow run name>`, reduced to what a git ref (DVC's experiment ref) accepts."""
    slug = re.sub(r"[^A-Za-z0-9_-]+", "-", flow_run_name).strip("-") or "run"
    return f"prefect-{slug}"


def save_experiment(ws: Path, name: str, message: str, timeout_s: float = 600) -> tuple[bool, str]:
    """`dvc exp save --force -n name` in the workspace: (saved, what DVC said). DVC needs the
    workspace to be a git repository with a commit; when it refuses, the reason comes back."""
    try:
        r = subprocess.run([sys.executable, "-m", "dvc", "exp", "save", "--force", "-n", name, "-m", message],
                           cwd=ws, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return False, f"dvc exp save did not finish in {timeout_s:.0f} s"
    said = (r.stdout + r.stderr).strip().splitlines()
    return r.returncode == 0, (said[-1] if said else f"dvc exp save exited with {r.returncode}")
