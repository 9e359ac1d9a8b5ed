"""Weights & Biases: one W&B run per mer run (docs/trackers.md).

wandb.init gets the id kept in the run directory's trackers.json with resume="allow", so a resumed mer run
continues the same W&B run; offline mode (logger.wandb.mode=offline or WANDB_MODE=offline) needs no account and
writes `<dir>/wandb/offline-run-*/run-<id>.wandb`, which `wandb sync` uploads later. The config is the run's
config (flattened), every record is logged at its step, the summary goes into the run summary with `status`,
and the run ends with exit code 0 when completed, 1 otherwise.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

from mer.trackers.base import Tracker
from mer.trackers.config import WandbConfig


class WandbTracker(Tracker):
    name = "wandb"

    def __init__(self, cfg: WandbConfig, run_dir: Path, run_name: str, runs_dir: Path) -> None:
        self.cfg, self.run_dir, self.run_name = cfg, run_dir, run_name
        self.project = cfg.project or os.environ.get("WANDB_PROJECT") or "mer"
        self.group = cfg.group or runs_dir.expanduser().resolve().name
        self.dir = Path(cfg.dir).expanduser().resolve() if cfg.dir is not None else run_dir.resolve()
        self.run = None
        self.run_id: str | None = None
        self.held_before = 0

    def open(self, saved: dict[str, Any] | None, config: dict[str, Any]) -> int:
        import wandb

        same_place = (saved is not None and saved.get("id") and saved.get("project") == self.project
                      and saved.get("entity") == self.cfg.entity)
        self.run_id = saved["id"] if same_place else secrets.token_hex(6)  # W&B ids: letters and digits
        self.dir.mkdir(parents=True, exist_ok=True)
        self.run = wandb.init(id=self.run_id, resume="allow", project=self.project, entity=self.cfg.entity,
                              group=self.group, name=self.run_name, dir=str(self.dir), mode=self.cfg.mode,
                              reinit="create_new")
        self.run.config.update(config, allow_val_change=True)
        self.run.summary["status"] = "running"
        self.held_before = int(self.run.step)  # the step W&B's run is at: every earlier one it holds
        return int(saved.get("sent", 0)) if same_place else 0

    def log(self, step: int, metrics: dict[str, float]) -> None:
        if step < self.held_before:
            return  # W&B holds this step already (sent by an earlier attempt): it dedupes by step, without warnings
        self.run.log(metrics, step=step)

    def flush(self) -> int:
        """Only the steps W&B held when this attempt opened the run are durable before `finish`.

        `run.log` hands a point to W&B's service process, which writes its run file in 32 KiB blocks (the
        latest step's row even stays open in memory) and offers no flush; on a kill -9 it dies with the run and
        loses what it had not written. So nothing logged in this attempt counts as sent until `finish` writes it
        all; after a kill the next launch sends it again, and W&B keeps each step once."""
        return self.held_before

    def finish(self, status: str, summary: dict[str, float], step: int, error: str | None) -> None:
        self.run.summary.update({**summary, "status": status, **({"error": error} if error else {})})
        self.run.finish(exit_code=0 if status == "completed" else 1)

    def state(self) -> dict[str, Any]:
        return {"id": self.run_id, "project": self.project, "entity": self.cfg.entity}
