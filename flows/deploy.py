"""The scheduled deployment of the rcdistill flow; schedule and name come from params.yaml.

Needs a Prefect server (`prefect server start --host 127.0.0.1`) and PREFECT_API_URL pointing at it.

    python flows/deploy.py serve                 # create the deployment and run it from this process
    python flows/deploy.py deploy --pool rcd-process   # register it with a `process` work pool
    prefect worker start --pool rcd-process            # ... and a worker that runs it
    prefect deploy --all                         # or Prefect's own way: prefect.yaml (same deployment)
    python flows/deploy.py prefect-yaml [--check]  # write prefect.yaml from params (or say if it is stale)

The deployment's `workspace` parameter defaults to the workspace given here (the repo by
default); its schedule is `orchestration.cron` in `orchestration.timezone`.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from rcdistill_flow import REPO, rcdistill  # noqa: E402

from rcdistill.config import load_params  # noqa: E402

ENTRYPOINT = "flows/rcdistill_flow.py:rcdistill"
DEFAULT_POOL = "rcd-process"
PREFECT_YAML = REPO / "prefect.yaml"
PREFECT_YAML_HEADER = """\
# Written by `python flows/deploy.py prefect-yaml` from params.yaml (its `orchestration` block):
# change the schedule there and rewrite this file; `--check` says whether it is stale.
# From the repository root, with a Prefect server in PREFECT_API_URL:
#   prefect work-pool create rcd-process --type process
#   prefect deploy --all
#   prefect worker start --pool rcd-process
# No `pull` steps: the worker runs the flow in the folder `prefect deploy` ran in (this repository).
"""


def render_prefect_yaml(params_path: Path = REPO / "params.yaml", pool: str = DEFAULT_POOL) -> str:
    """prefect.yaml for `prefect deploy`: the same deployment `deploy` creates (name, schedule,
    one run at a time), the flow's timeouts enforced by the flow itself from params."""
    o = load_params(params_path).orchestration
    doc = {"name": "rcdistill", "prefect-version": "3", "build": None, "push": None,
           "deployments": [{
               "name": o.deployment, "entrypoint": ENTRYPOINT, "tags": ["rcdistill"],
               "description": f"rcdistill pipeline (DVC stages from cache_latents on), {o.cron} ({o.timezone})",
               "work_pool": {"name": pool}, "concurrency_limit": 1,
               "schedules": [{"cron": o.cron, "timezone": o.timezone, "active": True}]}]}
    return PREFECT_YAML_HEADER + yaml.safe_dump(doc, sort_keys=False)


def write_prefect_yaml(check: bool) -> int:
    from rcdistill.io import atomic_write_text

    text = render_prefect_yaml()
    if check:
        same = PREFECT_YAML.exists() and PREFECT_YAML.read_text() == text
        print(f"{PREFECT_YAML.name}: {'up to date' if same else 'stale: run python flows/deploy.py prefect-yaml'}")
        return 0 if same else 1
    atomic_write_text(PREFECT_YAML, text)
    print(f"{PREFECT_YAML.name} written from params.yaml")
    return 0


def _settings(workspace: str):
    from prefect.schedules import Cron

    ws = Path(workspace).expanduser().resolve()
    o = load_params(ws / "params.yaml").orchestration
    return ws, o, [Cron(o.cron, timezone=o.timezone)]


def _require_server() -> None:
    from prefect.settings import PREFECT_API_URL

    if not PREFECT_API_URL.value():
        raise SystemExit("PREFECT_API_URL is not set: start a server (prefect server start --host 127.0.0.1 "
                         "--port 4200) and export PREFECT_API_URL=http://127.0.0.1:4200/api")


def serve(workspace: str, paused: bool = False) -> None:
    _require_server()
    ws, o, schedules = _settings(workspace)
    rcdistill.serve(name=o.deployment, schedules=schedules, parameters={"workspace": str(ws)}, paused=paused,
                    tags=["rcdistill"], description=f"rcdistill pipeline in {ws}, {o.cron} ({o.timezone})",
                    global_limit=1)


def deploy(workspace: str, pool: str, paused: bool = False) -> None:
    _require_server()
    ws, o, schedules = _settings(workspace)
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            client.read_work_pool(pool)
        except ObjectNotFound:
            client.create_work_pool(WorkPoolCreate(name=pool, type="process"))
            print(f"created work pool {pool!r} (type process)")
    flow = rcdistill.from_source(source=str(REPO), entrypoint=ENTRYPOINT)
    flow.deploy(name=o.deployment, work_pool_name=pool, schedules=schedules, parameters={"workspace": str(ws)},
                paused=paused, tags=["rcdistill"], concurrency_limit=1, build=False, push=False,
                description=f"rcdistill pipeline in {ws}, {o.cron} ({o.timezone})", print_next_steps=False)
    print(f"deployment rcdistill/{o.deployment} on work pool {pool!r}; start a worker: "
          f"prefect worker start --pool {pool}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("mode", choices=["serve", "deploy", "prefect-yaml"])
    ap.add_argument("--workspace", default=str(REPO), help="DVC workspace the runs work in (default: this repo)")
    ap.add_argument("--pool", default=DEFAULT_POOL, help="work pool for `deploy` (created as `process` if missing)")
    ap.add_argument("--paused", action="store_true", help="create the schedule paused (manual runs only)")
    ap.add_argument("--check", action="store_true", help="prefect-yaml: only say whether prefect.yaml is stale (exit 1)")
    args = ap.parse_args(argv)
    if args.mode == "prefect-yaml":
        return write_prefect_yaml(args.check)
    if args.mode == "serve":
        serve(args.workspace, args.paused)
    else:
        deploy(args.workspace, args.pool, args.paused)
    return 0


if __name__ == "__main__":
    sys.exit(main())
