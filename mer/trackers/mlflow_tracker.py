"""MLflow: one MLflow run per mer run, written through MlflowClient (docs/trackers.md).

The config goes in as parameters (flattened, once, when the MLflow run is created), every record as metrics at
its step (log_batch, one call per batch the background thread takes), the summary as `summary/...` metrics at
the last step, the status as the run's status (RUNNING, FINISHED, FAILED, KILLED for a signal-stopped run) and
the tag `mer.status`. The run id is kept in the run directory's trackers.json; a resumed run reopens that run.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from mer.trackers.base import Tracker
from mer.trackers.config import MlflowConfig

MLFLOW_STATUS = {"completed": "FINISHED", "failed": "FAILED", "stopped": "KILLED", "running": "RUNNING"}
BATCH_METRICS, BATCH_PARAMS = 1000, 100  # MLflow's limits per log_batch call
PARAM_VALUE_CHARS = 6000


def tracking_uri(cfg: MlflowConfig, runs_dir: Path) -> str:
    """The configured URI, else $MLFLOW_TRACKING_URI, else a SQLite file beside the runs (MLflow's own default
    store kind since 3.x; the file store is in maintenance mode)."""
    uri = cfg.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    return f"sqlite:///{(runs_dir.expanduser().resolve() / 'mlflow.db')}"


class MlflowTracker(Tracker):
    name = "mlflow"

    def __init__(self, cfg: MlflowConfig, run_dir: Path, run_name: str, runs_dir: Path) -> None:
        self.uri = tracking_uri(cfg, runs_dir)
        self.experiment = cfg.experiment or runs_dir.expanduser().resolve().name
        self.run_dir, self.run_name = run_dir, run_name
        self.client = None
        self.run_id: str | None = None
        self._pending: list = []

    def open(self, saved: dict[str, Any] | None, config: dict[str, Any]) -> int:
        if self.uri.startswith("file:") or "://" not in self.uri:
            # A file store was asked for by name: MLflow 3 refuses it unless this opt-in is set.
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        from mlflow.entities import Param, RunStatus
        from mlflow.exceptions import MlflowException
        from mlflow.tracking import MlflowClient

        self.client = MlflowClient(tracking_uri=self.uri)
        if saved is not None and saved.get("tracking_uri") == self.uri and saved.get("run_id"):
            try:
                run = self.client.get_run(saved["run_id"])
            except MlflowException:
                run = None  # deleted from the store: start a new MLflow run and send it everything
            if run is not None and run.info.lifecycle_stage == "active":
                self.run_id = run.info.run_id
                self.client.update_run(self.run_id, status=RunStatus.to_string(RunStatus.RUNNING))
                self.client.set_tag(self.run_id, "mer.status", "running")
                return int(saved.get("sent", 0))
        experiment_id = self._experiment_id(MlflowException)
        run = self.client.create_run(experiment_id, run_name=self.run_name,
                                     tags={"mer.run_dir": str(self.run_dir.resolve()), "mer.status": "running"})
        self.run_id = run.info.run_id
        params = [Param(key[:250], str(value)[:PARAM_VALUE_CHARS]) for key, value in config.items()]
        for i in range(0, len(params), BATCH_PARAMS):
            self.client.log_batch(self.run_id, params=params[i:i + BATCH_PARAMS])
        return 0

    def _experiment_id(self, MlflowException) -> str:
        found = self.client.get_experiment_by_name(self.experiment)
        if found is not None:
            return found.experiment_id
        try:
            return self.client.create_experiment(self.experiment)
        except MlflowException:  # another point of the sweep created it meanwhile
            return self.client.get_experiment_by_name(self.experiment).experiment_id

    def log(self, step: int, metrics: dict[str, float]) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self._pending.extend(Metric(name, value, now, step) for name, value in metrics.items())

    def flush(self) -> None:  # everything logged is durable once it returns
        pending, self._pending = self._pending, []
        for i in range(0, len(pending), BATCH_METRICS):
            self.client.log_batch(self.run_id, metrics=pending[i:i + BATCH_METRICS])

    def finish(self, status: str, summary: dict[str, float], step: int, error: str | None) -> None:
        self.log(step, summary)
        self.flush()
        self.client.set_tag(self.run_id, "mer.status", status)
        if error:
            self.client.set_tag(self.run_id, "mer.error", error[:5000])
        self.client.set_terminated(self.run_id, status=MLFLOW_STATUS[status])

    def state(self) -> dict[str, Any]:
        return {"tracking_uri": self.uri, "run_id": self.run_id, "experiment": self.experiment}
