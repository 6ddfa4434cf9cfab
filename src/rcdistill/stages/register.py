"""Stage `register`: every student into the MLflow registry as `challenger`, promoted by its gate."""
from __future__ import annotations

from ..config import Params
from ..registry.stage import run_register_stage
from ..roster import STUDENTS


def run(params: Params, args) -> int:
    result = run_register_stage(params)
    for r in (result, *(result.get(m.name) for m in STUDENTS[1:])):
        print_registration(r)
    return 0


def print_registration(r: dict | None) -> None:
    """One line per registered model: its version and the gate's verdict."""
    if r:
        what = "registered as new version" if r["new_version"] else "already registered as version"
        print(f"{r['model_name']}: {what} {r['version']} (alias challenger); "
              + (f"promoted to champion: {r['reason']}" if r["promoted"] else f"not promoted: {r['reason']}"))
