"""What every tracker implements; `mer.trackers.dispatch` calls them (docs/trackers.md).

`open` runs in the main thread before training, so that a wrong URI or a missing login is refused before any
step; everything else runs in the trackers' background thread, never inside a training step.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any


class Tracker(ABC):
    name: str = ""
    can_rewind = False
    """True when the tracker can drop what it holds from a step on (TensorBoard's purge_step): on a resume it is
    sent again every record after the checkpoint, so it shows the resumed run's values. Trackers that cannot
    (MLflow, W&B) skip the records they already hold."""

    @abstractmethod
    def open(self, saved: dict[str, Any] | None, config: dict[str, Any]) -> int:
        """Start or continue this run's tracker run; `saved` is what `state()` returned last time (None: new run).
        Returns how many records of metrics.jsonl it already holds (0 for a new run or a new destination)."""

    def rewind(self, purge_step: int) -> None:
        """Only for `can_rewind`: called once before the first `log`; points from `purge_step` on are dropped."""

    @abstractmethod
    def log(self, step: int, metrics: dict[str, float]) -> None:
        """One record's metrics at `step`."""

    @abstractmethod
    def flush(self) -> int | None:
        """Make what was logged durable before the state saying so is written. Returns None when everything
        logged is durable, or a step: only the points of earlier steps are (W&B holds the latest step's row open
        in its service process); the others count as unconfirmed and are sent again after a kill."""

    @abstractmethod
    def finish(self, status: str, summary: dict[str, float], step: int, error: str | None) -> None:
        """Log the summary metrics and the final status, then close."""

    @abstractmethod
    def state(self) -> dict[str, Any]:
        """What identifies the tracker run (its id, its destination), kept in the run directory's trackers.json."""
