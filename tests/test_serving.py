"""The registered models served over HTTP by MLflow's own model server, in a fresh process: the
text-to-image ones never import rcdistill (the model carries its torchvision fix with it); the
image-conditioned one carries the rcdistill package (its adapter class) in its code paths."""
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _request(model: str) -> dict:
    prompts = ["a large red circle in the center", "a small blue square, top left"]
    if model == "rcdistill-codi":  # prompts and edge maps (base64 PNG), as a pandas split frame
        from rcdistill.codi.conditions import example_condition_png
        edge = example_condition_png(32)
        return {"dataframe_split": {"columns": ["prompt", "condition_png"], "data": [[p, edge] for p in prompts]},
                "params": {"seed": 3}}
    return {"inputs": prompts, "params": {"seed": 3}}


@pytest.mark.slow
@pytest.mark.parametrize("model", ["rcdistill-student", "rcdistill-student-fast", "rcdistill-student-boot",
                                   "rcdistill-codi"])
def test_mlflow_models_serve_answers_with_images(tiny_project, model, tmp_path):
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "COV"))}
    env.update(MLFLOW_TRACKING_URI=f"sqlite:///{tiny_project / 'mlruns/mlflow.db'}", PYTHONWARNINGS="ignore")
    mlflow_cli = str(Path(sys.executable).parent / "mlflow")
    log = (tmp_path / "server.log").open("w")
    server = subprocess.Popen([mlflow_cli, "models", "serve", "-m", f"models:/{model}@champion", "--env-manager",
                               "local", "--host", "127.0.0.1", "-p", str(port)], cwd=tiny_project, env=env,
                              stdout=log, stderr=subprocess.STDOUT,
                              start_new_session=True)  # its workers share the group: stop them all
    try:
        deadline = time.time() + 180
        while True:
            assert server.poll() is None, f"server exited: {(tmp_path / 'server.log').read_text()[-3000:]}"
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2)
                break
            except OSError:
                assert time.time() < deadline, "server did not answer /ping in 180 s"
                time.sleep(1)
        body = json.dumps(_request(model)).encode()
        req = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=body,
                                     headers={"Content-Type": "application/json"})
        answer = json.loads(urllib.request.urlopen(req, timeout=120).read())
        images = np.asarray(answer["predictions"])
        assert images.shape == (2, 32, 32, 3) and images.dtype.kind in "iu", images.shape
        assert images.min() >= 0 and images.max() <= 255 and images.std() > 0
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
