"""The flow's own MLflow run: the parent of the stage runs, tagged with the Prefect flow run."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from prefect import get_run_logger

from rcdistill.config import Params
from rcdistill.tracking import resolved_uri


class FlowRun:
    """The flow's own MLflow run (parent of the stage runs it starts); MLflow trouble never fails the flow."""

    def __init__(self, ws: Path, p: Params, tags: dict[str, str], params: dict[str, Any]):
        self.client = self.run_id = None
        self.uri = resolved_uri(p.tracking.uri, ws)
        try:
            from mlflow import MlflowClient

            (ws / "mlruns").mkdir(exist_ok=True)
            self.client = MlflowClient(tracking_uri=self.uri)
            exp = self.client.get_experiment_by_name(p.tracking.experiment)
            if exp is None:
                exp_id = self.client.create_experiment(
                    p.tracking.experiment, artifact_location=(ws / p.tracking.artifacts).resolve().as_uri())
            else:
                exp_id = exp.experiment_id
            self.experiment_id = exp_id
            run = self.client.create_run(exp_id, run_name="prefect-flow", tags=tags)
            self.run_id = run.info.run_id
            for k, v in params.items():
                self.client.log_param(self.run_id, k, json.dumps(v) if not isinstance(v, str) else v)
        except Exception as err:  # noqa: BLE001
            get_run_logger().warning("MLflow flow run not recorded: %s", err)
            self.client = None

    def stage_runs(self, flow_run_id: str) -> list[tuple[str, str]]:
        if not self.client:
            return []
        try:
            runs = self.client.search_runs([self.experiment_id],
                                           f"tags.`prefect.flow_run_id` = '{flow_run_id}'",
                                           order_by=["attributes.start_time ASC"])
        except Exception as err:  # noqa: BLE001  (the artifact then lists no stage runs; it says so)
            get_run_logger().warning("MLflow stage runs of this flow run not listed in the artifact: %s", err)
            return []
        return [(r.info.run_name, r.info.run_id) for r in runs if r.info.run_id != self.run_id]

    def finish(self, ok: bool, tags: dict[str, str], metrics: dict[str, float]) -> None:
        """Tags and metrics as far as MLflow takes them (each loss is named in a warning); the run is
        always ended, FINISHED or FAILED, so it never stays RUNNING."""
        if not self.client:
            return
        from mlflow.entities import Metric, RunTag

        log = get_run_logger()
        try:
            self.client.log_batch(self.run_id, metrics=[Metric(k, float(v), int(time.time() * 1000), 0)
                                                        for k, v in metrics.items()],
                                  tags=[RunTag(k, str(v)) for k, v in tags.items()])
        except Exception as err:  # noqa: BLE001
            log.warning("MLflow flow run %s: %d tags and %d metrics not recorded: %s", self.run_id, len(tags),
                        len(metrics), err)
        finally:
            status = "FINISHED" if ok else "FAILED"
            try:
                self.client.set_terminated(self.run_id, status)
            except Exception as err:  # noqa: BLE001
                log.warning("MLflow flow run %s could not be set %s and may show RUNNING: %s", self.run_id, status, err)
