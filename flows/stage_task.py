"""The Prefect task that runs one DVC stage (`dvc repro <stage>`), and which of its failures to retry."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import INPUTS, RUN_ID

PERMANENT_EXIT_CODES = {1: "quality gate failed", 2: "user error (params or input)"}
TIMED_OUT = "timed out"  # the reason of a stage stopped at orchestration.stage_timeout_s
TAIL_LINES = 40
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_PROGRESS = re.compile(r"\d+%\|")


class StageFailed(Exception):
    """`dvc repro <stage>` failed; the message carries the tail of the stage's output."""

    def __init__(self, stage: str, exit_code: int | None, tail: str, transient: bool, reason: str):
        super().__init__(stage, exit_code, tail, transient, reason)
        self.stage, self.exit_code, self.tail, self.transient, self.reason = stage, exit_code, tail, transient, reason

    def __str__(self) -> str:
        code = "" if self.exit_code is None else f"exit code {self.exit_code}, "
        retry = "transient, retried" if self.transient else "not retried"
        return f"stage '{self.stage}' failed ({code}{self.reason}; {retry}); last output:\n{self.tail}"


def classify_failure(exit_code: int | None, tail: str, dvc_rc: int) -> tuple[bool, str]:
    """(transient, reason). rcd's own one-line errors (exit 2: user error, 1: quality gate) and DVC's
    refusals are permanent; crashes, kills and a busy DVC lock are worth a retry."""
    rcd_error = any(line.startswith("error: ") for line in tail.splitlines())
    if exit_code is None:
        if "unable to acquire lock" in tail.lower():
            return True, "DVC lock busy"
        if "ERROR" in tail:
            return False, "DVC refused the stage"
        return True, f"dvc exited with {dvc_rc} without an error message"
    if exit_code in PERMANENT_EXIT_CODES and rcd_error:
        return False, PERMANENT_EXIT_CODES[exit_code]
    if exit_code < 0 or exit_code > 128:
        return True, "killed by a signal"
    return True, "crashed" if "Traceback" in tail else "failed"


def stage_env(extra: dict[str, str]) -> dict[str, str]:
    env = dict(os.environ)
    venv_bin = str(Path(sys.executable).parent)
    if venv_bin not in env.get("PATH", "").split(os.pathsep):  # `rcd` of this environment
        env["PATH"] = venv_bin + os.pathsep + env.get("PATH", "")
    env.update({"PYTHONUNBUFFERED": "1", "TQDM_MININTERVAL": "5"})
    env.update(extra)
    return env


def _retry_transient(task, task_run, state) -> bool:
    exc = state.data if isinstance(state.data, BaseException) else state.result(raise_on_failure=False)
    return not isinstance(exc, StageFailed) or exc.transient


def _stop(proc: subprocess.Popen) -> None:
    """Stop `dvc repro` and the stage command it started (its own process group): TERM, then KILL."""
    if proc.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


# The stage's result (status, seconds, what DVC reran) is persisted as JSON, so a finished flow
# run's task results stay readable. Prefect writes a result only under a cache key (NO_CACHE writes
# nothing), so the key is the inputs within this flow run: no other run can hit it, and DVC still
# decides what is stale.
@task(name="dvc-repro", cache_policy=INPUTS + RUN_ID, persist_result=True, result_serializer="json",
      retry_condition_fn=_retry_transient)
def dvc_stage(workspace: str, stage: str, env: dict[str, str], timeout_s: float | None = None) -> dict[str, Any]:
    """`dvc repro <stage>` (DVC reruns stale upstream stages itself); output into the run logger.
    After `timeout_s` the stage is stopped and fails (not retried: it would hang again)."""
    log = get_run_logger()
    cmd = [sys.executable, "-m", "dvc", "repro", stage]
    log.info("$ dvc repro %s   (in %s)", stage, workspace)
    tail: deque[str] = deque(maxlen=TAIL_LINES)
    ran: list[str] = []
    start = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=workspace, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, errors="replace", bufsize=1, start_new_session=True)
    timed_out = threading.Event()

    def _on_timeout() -> None:
        timed_out.set()
        _stop(proc)

    watchdog = threading.Timer(timeout_s, _on_timeout) if timeout_s else None
    if watchdog:
        watchdog.daemon = True
        watchdog.start()
    try:
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = _ANSI.sub("", raw.rstrip("\n").split("\r")[-1]).rstrip()  # progress bars: last update
            if not line:
                continue
            if not _PROGRESS.search(line):
                tail.append(line)
            m = re.search(r"Running stage '([^']+)'", line)
            if m:
                ran.append(m.group(1))
            (log.error if line.startswith("ERROR") else log.info)("[%s] %s", stage, line)
        rc = proc.wait()
    finally:
        if watchdog:
            watchdog.cancel()
        _stop(proc)  # the flow was cancelled or crashed: do not leave DVC running
    seconds = time.monotonic() - start
    if timed_out.is_set():
        raise StageFailed(stage, None, "\n".join(tail), False,
                          f"{TIMED_OUT} after {timeout_s:.0f} s (orchestration.stage_timeout_s)")
    if rc != 0:
        text = "\n".join(tail)
        m = re.findall(r"exited with (-?\d+)", text)
        code = int(m[-1]) if m else None
        raise StageFailed(stage, code, text, *classify_failure(code, text, rc))
    status = "ran" if stage in ran else "up to date"
    log.info("stage %s: %s in %.1f s%s", stage, status, seconds,
             f" (also reproduced: {', '.join(s for s in ran if s != stage)})" if set(ran) - {stage} else "")
    return {"stage": stage, "status": status, "seconds": round(seconds, 1), "reproduced": ran}
