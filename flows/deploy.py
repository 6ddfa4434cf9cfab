"""The scheduled deployment of the rcdistill flow; schedule and name come from params.yaml.

Needs a Prefect server (`prefect server start --host 127.0.0.1`) and PREFECT_API_URL pointing at it.

    python flows/deploy.py serve                 # create the deployment and run it from this process
    python flows/deploy.py deploy --pool rcd-process   # register it with a `process` work pool
    prefect worker start --pool rcd-process            # ... and a worker that runs it

The deployment's `workspace` parameter defaults to the workspace given here (the repo by
default); its schedule is `orchestration.cron` in `orchestration.timezone`.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from rcdistill_flow import REPO, rcdistill  # noqa: E402

from rcdistill.config import load_params  # noqa: E402

ENTRYPOINT = "flows/rcdistill_flow.py:rcdistill"


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
    ap.add_argument("mode", choices=["serve", "deploy"])
    ap.add_argument("--workspace", default=str(REPO), help="DVC workspace the runs work in (default: this repo)")
    ap.add_argument("--pool", default="rcd-process", help="work pool for `deploy` (created as `process` if missing)")
    ap.add_argument("--paused", action="store_true", help="create the schedule paused (manual runs only)")
    args = ap.parse_args(argv)
    if args.mode == "serve":
        serve(args.workspace, args.paused)
    else:
        deploy(args.workspace, args.pool, args.paused)
    return 0


if __name__ == "__main__":
    sys.exit(main())
