"""One pipeline run per workspace: a Prefect global concurrency limit keyed by the workspace path,
and a file lock in the workspace for runs that talk to different Prefect APIs."""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import time
from pathlib import Path
from typing import Iterator

from prefect.runtime import flow_run as runtime_flow_run


class WorkspaceBusy(TimeoutError):
    pass


def workspace_key(ws: Path) -> str:
    return "rcdistill-workspace-" + hashlib.sha1(str(ws).encode()).hexdigest()[:12]


@contextlib.contextmanager
def workspace_lock(ws: Path, timeout_s: float | None = None, log=None) -> Iterator[None]:
    """An exclusive file lock in the workspace's .dvc/tmp: one flow run per workspace on this host,
    whatever Prefect API the runs talk to. Released by the OS if the process dies."""
    path = ws / ".dvc" / "tmp" / "rcdistill-flow.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        start = time.monotonic()
        waited = False
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not waited and log:
                    fh.seek(0)
                    log(f"another pipeline run holds {path} ({fh.read().strip() or 'unknown'}); waiting")
                waited = True
                if timeout_s is not None and time.monotonic() - start > timeout_s:
                    raise WorkspaceBusy(f"workspace {ws} is busy with another pipeline run "
                                        f"(lock {path}, waited {timeout_s:.0f} s)") from None
                time.sleep(1.0)
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()} flow run {runtime_flow_run.id or '-'}\n")
        fh.flush()
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def ensure_global_limit(name: str) -> None:
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            client.read_global_concurrency_limit_by_name(name)
        except ObjectNotFound:
            from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate

            try:
                client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=1))
            except Exception as err:  # noqa: BLE001
                try:  # a concurrent run created it first: fine; anything else is a real failure
                    client.read_global_concurrency_limit_by_name(name)
                except ObjectNotFound:
                    raise RuntimeError(f"Prefect concurrency limit {name!r} could not be created: {err}") from err
