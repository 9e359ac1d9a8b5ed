"""A run's status: what summary.json says, what readers report, and how a run records how it ended.

Written by the run (docs/run_directory.md): `running` (at start), `completed`, `failed` (with `error`, the
reason), `stopped` (a signal: SIGTERM, SIGUSR1, SIGINT; resumable) and `refused` (a multirun point whose
config the check refused). Reported by readers on top: `interrupted`, a `running` run whose lock is free
(its process died without a word: kill -9, a node failure); a run whose lock is held is `running`.

On a full disk the status cannot go to summary.json; it is then written in place into the lock file's
pre-allocated record (`mer.rundir.lock`), which readers consult when the lock is free.
"""

from __future__ import annotations

import logging
import signal
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mer.files.atomic import DiskFull, is_disk_full, write_text
from mer.files.strict_json import dumps as strict_dumps
from mer.rundir.lock import RunLock, lock_is_held, read_record

log = logging.getLogger(__name__)

RUNNING, COMPLETED, FAILED, STOPPED, REFUSED = "running", "completed", "failed", "stopped", "refused"
INTERRUPTED = "interrupted"
"""Never written: reported for a `running` run whose process is gone (its lock is free)."""
WRITTEN_STATUSES = (RUNNING, COMPLETED, STOPPED, FAILED, REFUSED)
REPORTED_STATUSES = (COMPLETED, RUNNING, STOPPED, INTERRUPTED, FAILED, REFUSED)


class StopSignal(BaseException):
    """A stop signal arrived before the trainer took over its handling (`mer.signals.startup_signals`).

    A BaseException, like KeyboardInterrupt, so that no `except Exception` on the way swallows it."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(f"signal {signum} ({signal.Signals(signum).name})")


def effective_status(run_dir: Path, summary: dict[str, Any] | None) -> str:
    """The status to report for `run_dir` whose summary.json holds `summary` (module docstring)."""
    run_dir = Path(run_dir)
    status = (summary or {}).get("status")
    if lock_is_held(run_dir):
        return status if status == COMPLETED else RUNNING  # a live process owns it (maybe still starting)
    record = read_record(run_dir)
    if record and record.get("status") in WRITTEN_STATUSES:  # summary.json could not be written (a full disk)
        status = record["status"]
    if status == RUNNING:
        return INTERRUPTED
    return status or "unknown"


def effective_error(run_dir: Path, summary: dict[str, Any] | None) -> str | None:
    """The recorded reason, from summary.json or (when it could not be written) the lock file."""
    record = read_record(run_dir) if not lock_is_held(run_dir) else None
    if record and record.get("status") in WRITTEN_STATUSES:
        return record.get("error")
    return (summary or {}).get("error")


def how_it_ended(error: BaseException) -> tuple[str, str]:
    """(status, reason) of a run that ended with `error`."""
    if isinstance(error, StopSignal):
        return STOPPED, (f"stopped by {error}; run the same command again to go on (from the last checkpoint, "
                         "if there is one)")
    if isinstance(error, KeyboardInterrupt):
        return STOPPED, ("stopped by signal SIGINT (KeyboardInterrupt); run the same command again to go on (from "
                         "the last checkpoint, if there is one)")
    if type(error).__name__ == "TrainingStopped" and "signal" in str(error):
        return STOPPED, str(error)
    reason = f"{type(error).__name__}: {error}".strip().splitlines()[-1][:2000]
    if is_disk_full(error) and not isinstance(error, DiskFull):
        reason = f"no space left on device ({reason})"
    return FAILED, reason


class StatusWriter:
    """summary.json of one run, written by the process that owns the run directory (rank 0)."""

    def __init__(self, path: Path, lock: RunLock | None, summary: dict[str, Any] | None) -> None:
        """`lock`: the run directory's lock this process holds (None on the ranks that do not write); `summary`:
        what summary.json holds now, None for a run that has not written anything yet (nothing to update)."""
        self.path, self.lock, self.summary = Path(path), lock, summary
        self.recorded_in: Path | None = None  # where the last status went

    @property
    def enabled(self) -> bool:
        return self.lock is not None and self.summary is not None

    def write(self) -> None:
        """Replace summary.json by `self.summary`; on a full disk put the status into the lock file instead
        and raise DiskFull with one line saying so."""
        if not self.enabled:
            return
        try:
            write_text(self.path, strict_dumps(self.summary, indent=2))
        except OSError as error:
            if not is_disk_full(error):
                raise
            self.recorded_in = self.lock.path if self._write_fallback() else None
            raise DiskFull(self._disk_full_message()) from None
        self.recorded_in = self.path
        if self.lock.keep_file:  # an earlier status went into the lock file: summary.json is the truth again
            self.lock.write_record({key: value for key, value in self.lock.record.items()
                                    if key not in ("status", "error", "status_written")})
            self.lock.keep_file = False

    def record_end(self, error: BaseException, wall_time_s: float | None = None) -> None:
        """Record that the run ended with `error` (stopped or failed); raises DiskFull if the disk is full."""
        if self.summary is not None:
            status, reason = how_it_ended(error)
            self.summary.update(status=status, error=reason)
            if wall_time_s is not None:
                self.summary["wall_time_s"] = wall_time_s
            self.write()
        if is_disk_full(error):
            raise DiskFull(self._disk_full_message(error)) from None

    def _write_fallback(self) -> bool:
        """The status into the lock file's record; False where that cannot be done either."""
        assert self.lock is not None
        if self.lock.fd is None:  # running without a lock (MER_UNLOCKED_RUN_DIRS): only stderr is left
            return False
        try:
            self.lock.write_record({**self.lock.record, "status": self.summary.get("status"),
                                    "error": self.summary.get("error"),
                                    "status_written": datetime.now(UTC).isoformat(timespec="seconds")})
        except OSError:  # a copy-on-write file system needs new blocks even for this: stderr it is
            return False
        self.lock.keep_file = True
        return True

    def _disk_full_message(self, error: BaseException | None = None) -> str:
        full = _full_folder(error) or self.path.parent  # the data cache's device, say, when it was that one
        if self.summary is None:
            return (f"no space left on the device of {full} (the run had written nothing yet); free space "
                    "there and run the same command again")
        if self.summary.get("status") == RUNNING:  # not an end yet: record_end follows and says how the run ended
            return f"no space left on the device of {full}: {self.path.name} could not be written"
        if self.recorded_in == self.path:
            where = f"recorded in {self.path}"
        elif self.recorded_in is not None:
            where = f"recorded in {self.recorded_in} since {self.path.name} could not be written"
        else:
            where = f"NOT recorded, no file could be written: {self.summary.get('error')}"
        return (f"no space left on the device of {full}: the run is {self.summary.get('status')} "
                f"({where}); free space there and run the same command again to resume from the last checkpoint")


def _full_folder(error: BaseException | None) -> Path | None:
    """The folder a DiskFull in `error`'s chain names as full (e.g. the data cache), or None."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, DiskFull) and getattr(error, "where", None) is not None:
            return Path(error.where)
        error = error.__cause__ or error.__context__
    return None
