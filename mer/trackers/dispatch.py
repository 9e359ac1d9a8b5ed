"""Send metrics.jsonl to the experiment trackers from a background thread (docs/trackers.md).

The training step only puts the record it just wrote on a queue (`Trackers.record`, MetricsLog's `on_append`);
a daemon thread takes everything queued, logs it to every tracker, flushes them and then writes
`<run dir>/trackers.json`: per tracker its run id / destination and `sent`, the number of metrics.jsonl records
it holds. That count is what makes a resume continue the same tracker run without duplicate points:

- records are numbered by their line in metrics.jsonl, which a resume cuts back to the checkpoint and then
  rewrites line by line, so a record's number is the same before and after a stop;
- on the first record after (re)start the thread reads the lines already in the file and sends those a tracker
  does not hold yet (a tracker added to a resumed run is filled from the start, one that lost its queue to a
  SIGKILL is filled up), then the live ones;
- MLflow and W&B skip the records they hold (records between the checkpoint and a hard kill keep the values
  first sent; a resume recomputes the same losses); TensorBoard instead drops everything from the first step it
  is sent again (purge_step) and is sent those records anew.

A tracker that fails while logging is dropped for the rest of the run with a warning; training goes on,
metrics.jsonl is complete, and launching the run again fills the tracker up from its last `sent`.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
from pathlib import Path
from typing import Any

from mer.rundir.layout import read_json, write_atomic
from mer.trackers.base import Tracker
from mer.trackers.records import flatten_config, record_metrics, status_of, summary_metrics

log = logging.getLogger(__name__)

STATE_FILE = "trackers.json"
CLOSE_TIMEOUT_S = 600.0
"""How long closing waits for the trackers to write what is queued (a remote server may be slow)."""


def build_trackers(names: list[str], logger_cfg: Any, run_dir: Path, run_name: str, runs_dir: Path) -> list[Tracker]:
    """The selected trackers (their libraries are imported here, only when selected)."""
    trackers: list[Tracker] = []
    for name in names:
        cfg = getattr(logger_cfg, name)
        if name == "tensorboard":
            from mer.trackers.tensorboard_tracker import TensorBoardTracker

            trackers.append(TensorBoardTracker(cfg, run_dir, run_name))
        elif name == "mlflow":
            from mer.trackers.mlflow_tracker import MlflowTracker

            trackers.append(MlflowTracker(cfg, run_dir, run_name, runs_dir))
        elif name == "wandb":
            from mer.trackers.wandb_tracker import WandbTracker

            trackers.append(WandbTracker(cfg, run_dir, run_name, runs_dir))
        else:
            raise ValueError(f"unknown tracker {name!r}")
    return trackers


class Trackers:
    """The trackers of one run and the thread that feeds them."""

    def __init__(self, trackers: list[Tracker], run_dir: Path, config: dict[str, Any]) -> None:
        self.trackers, self.run_dir = trackers, run_dir
        self.metrics_path = run_dir / "metrics.jsonl"
        saved = read_json(run_dir / STATE_FILE) or {}
        flat = flatten_config(config)
        self.sent: dict[str, int] = {}
        """Records each tracker has confirmed holding (its flush returned): what trackers.json says."""
        for tracker in trackers:  # in the main thread: a bad URI or a missing login stops the run before training
            self.sent[tracker.name] = tracker.open(saved.get(tracker.name), flat)
        self._logged = dict(self.sent)  # records handed to each tracker, confirmed or not yet
        self._unconfirmed: dict[str, list[int]] = {t.name: [] for t in trackers}  # their steps, oldest first
        self._states = {t.name: t.state() for t in trackers}
        self._failed: set[str] = set()
        self._queue: queue.Queue = queue.Queue()
        self._file_bytes: int | None = None  # metrics.jsonl's size when the first record arrived (written by then)
        self._next_index = 0
        self._last_step = 0
        self._save_state()
        self._thread = threading.Thread(target=self._work, name="mer-trackers", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------ main thread
    def record(self, record: dict[str, Any]) -> None:
        """MetricsLog.on_append: queue `record`, just written to metrics.jsonl. Costs one queue put (and, for the
        first record of the process, one stat of the file)."""
        if self._file_bytes is None:
            self._file_bytes = self.metrics_path.stat().st_size
        self._queue.put(("record", record))

    def close(self, summary: dict[str, Any]) -> None:
        """Send what is queued, then the summary and status (from summary.json's dict), and close the trackers."""
        if self._file_bytes is None:  # no record this time (e.g. resumed after the last checkpoint): catch up only
            self._file_bytes = self.metrics_path.stat().st_size if self.metrics_path.exists() else 0
        self._queue.put(("close", summary))
        self._thread.join(CLOSE_TIMEOUT_S)
        if self._thread.is_alive():
            log.warning("the experiment trackers did not finish within %.0f s; what they missed is in metrics.jsonl "
                        "and is sent when the run is launched again", CLOSE_TIMEOUT_S)

    # ------------------------------------------------------------ background thread
    def _work(self) -> None:
        started = False
        while True:
            items = [self._queue.get()]
            while True:  # everything queued meanwhile goes out in one batch, with one flush and one state write
                try:
                    items.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            if not started:
                self._catch_up(live_first=items[0][0] == "record")
                started = True
            closing = None
            for kind, payload in items:
                if kind == "record":
                    self._send(self._next_index, payload)
                    self._next_index += 1
                else:
                    closing = payload
            self._flush()
            if closing is not None:
                self._finish(closing)
                return

    def _catch_up(self, live_first: bool) -> None:
        """Number the records already in metrics.jsonl, rewind the trackers that can, send what they lack."""
        existing = _read_records(self.metrics_path, self._file_bytes or 0)
        if live_first:
            existing = existing[:-1]  # the last line written is the first live record, queued
        self._next_index = len(existing)
        for tracker in self._live():
            if tracker.can_rewind:
                start = min(self.sent[tracker.name], len(existing))
                if start < len(existing):  # from the first record of that step on: all of the step's points go
                    purge = existing[start]["step"]
                    while start > 0 and existing[start - 1]["step"] == purge:
                        start -= 1
                else:  # whatever it holds past the file's end came from steps after the last line kept
                    purge = existing[-1]["step"] + 1 if existing else 0
                self.sent[tracker.name] = self._logged[tracker.name] = start
                self._unconfirmed[tracker.name] = []
                self._call(tracker, tracker.rewind, purge)
        for index, record in enumerate(existing):
            self._send(index, record)

    def _send(self, index: int, record: dict[str, Any]) -> None:
        self._last_step = max(self._last_step, int(record.get("step", 0)))
        metrics = None
        for tracker in self._live():
            if index < self._logged[tracker.name]:
                continue  # already there
            if metrics is None:
                metrics = record_metrics(record)
            if self._call(tracker, tracker.log, int(record["step"]), metrics):
                self._logged[tracker.name] = index + 1
                self._unconfirmed[tracker.name].append(int(record["step"]))

    def _flush(self) -> None:
        """A record counts as sent (in trackers.json) only once the tracker's flush confirms it holds it: a kill
        before that leaves it unconfirmed, and the next launch sends it again (the trackers dedupe by step)."""
        for tracker in self._live():
            try:
                held_before = tracker.flush()
            except Exception as error:  # noqa: BLE001 - as in _call: the tracker is dropped, training goes on
                self._call(tracker, _raise, error)
                continue
            steps = self._unconfirmed[tracker.name]
            confirmed = len(steps) if held_before is None else next(
                (i for i, step in enumerate(steps) if step >= held_before), len(steps))
            self.sent[tracker.name] = self._logged[tracker.name] - len(steps) + confirmed
            del steps[:confirmed]
        self._save_state()

    def _finish(self, summary: dict[str, Any]) -> None:
        status, numbers = status_of(summary), summary_metrics(summary)
        step = int((summary.get("totals") or {}).get("steps", self._last_step))
        for tracker in self._live():
            if self._call(tracker, tracker.finish, status, numbers, step, summary.get("error")):
                self.sent[tracker.name] = self._logged[tracker.name]  # closed: it wrote everything
                self._unconfirmed[tracker.name] = []
        self._save_state()

    def _live(self) -> list[Tracker]:
        return [t for t in self.trackers if t.name not in self._failed]

    def _call(self, tracker: Tracker, method, *args) -> bool:
        try:
            method(*args)
            return True
        except Exception as error:  # noqa: BLE001 - a tracker never stops training: metrics.jsonl has everything
            self._failed.add(tracker.name)
            log.warning("tracker %s failed (%s: %s); it gets no more records in this process, metrics.jsonl has "
                        "them all and launching the run again sends what it missed", tracker.name,
                        type(error).__name__, error)
            return False

    def _save_state(self) -> None:
        state = read_json(self.run_dir / STATE_FILE) or {}  # keeps trackers not selected this time
        for tracker in self.trackers:
            state[tracker.name] = {**self._states[tracker.name], "sent": self.sent[tracker.name]}
        write_atomic(self.run_dir / STATE_FILE, json.dumps(state, indent=2))


def _raise(error: Exception) -> None:
    raise error


def _read_records(path: Path, size: int) -> list[dict[str, Any]]:
    """The complete lines among the first `size` bytes of metrics.jsonl."""
    if size <= 0 or not path.exists():
        return []
    with open(path, "rb") as handle:
        data = handle.read(size)
    return [json.loads(line) for line in data.split(b"\n") if line.strip()]


def open_trackers(logger_cfg: Any, run_dir: Path, run_name: str, runs_dir: Path,
                  config: dict[str, Any]) -> Trackers | None:
    """The run's trackers, opened (None when `logger` selects none): call `record` with every metrics.jsonl record
    (MetricsLog.on_append) and `close` with the final summary."""
    names = logger_cfg.selected
    if not names:
        return None
    return Trackers(build_trackers(names, logger_cfg, run_dir, run_name, runs_dir), run_dir, config)


def close_trackers(trackers: Trackers | None, summary: dict[str, Any]) -> None:
    """`trackers.close(summary)`, for the runner's three endings (completed, stopped, failed)."""
    if trackers is not None:
        trackers.close(summary)
