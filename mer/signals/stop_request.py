"""A stop asked of a whole sweep by SIGTERM or SIGINT, shared by the sweepers, `mer.run` and the trainer.

A multirun (`python -m mer.run -m ...` with Hydra's basic launcher) runs its jobs one after the other in one
process. Each job's trainer handles SIGTERM/SIGUSR1 while it trains (finish the step, checkpoint, exit 143),
but a signal that arrives outside that window (a job's start-up and step-0 evaluation, its last evaluation,
between two jobs) or a Ctrl-C used to be lost or to fail the job, and the sweep went on with the next point.

While a sweeper runs its points inside `SweepStop`, SIGTERM and SIGINT only record a request here, and:
- the trainer stops after its current step, checkpoints and exits with 143 (it reads `requested()` at every
  step and its own SIGTERM/SIGUSR1 handler records here too, so a signal during a job's last evaluation still
  stops the sweep after that job);
- a job that has not started training exits with 143 before it writes anything (`mer.run`);
- the sweeper ends with exit code 143 and a message; launched again, completed points are skipped and the
  stopped one resumes from its checkpoint.
A second Ctrl-C aborts at once (KeyboardInterrupt). Outside a sweep nothing here is active: a single run keeps
its own handling (docs/sweeps.md, "Stopping a sweep"). With the local launcher (one process per job) the launcher
passes the request on to its jobs as SIGTERM and the sweep exits with 143 once they have checkpointed.
"""

from __future__ import annotations

import logging
import signal
import threading
from typing import Any

log = logging.getLogger(__name__)

STOPPED_BY_SIGNAL = 143
"""Exit code of a run or sweep stopped by a signal after a checkpoint (128 + SIGTERM): resumable."""

_active = False
_requested: int | None = None


def request(signum: int) -> None:
    """Record that `signum` asked the sweep to stop (only while a sweep runs; the first signal is kept)."""
    global _requested
    if _active and _requested is None:
        _requested = signum


def requested() -> int | None:
    """The signal that asked the running sweep to stop, or None (always None outside a sweep)."""
    return _requested if _active else None


class SweepStop:
    """Context manager of a sweep: SIGTERM/SIGINT record a stop request instead of killing the process.

    For jobs that run in the sweep's own process (`in_process`, Hydra's basic launcher), and for a launcher that
    `forwards` the request to its jobs' processes (the local submitit launcher: it passes SIGTERM on and waits for
    them, so that none is left training as an orphan). With Slurm the jobs get their own signals through Slurm; the
    sweep process keeps the default action, so that a SIGTERM to it does not wait for a whole job array."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self, in_process: bool = True, forwards: bool = False) -> None:
        self._previous: dict[int, Any] = {}
        self.in_process = in_process or forwards  # either way: the signals are this sweep's to handle

    def _handler(self, signum: int, frame: Any) -> None:
        if signum == signal.SIGINT and _requested is not None:
            raise KeyboardInterrupt  # a second Ctrl-C: the user does not want to wait for the checkpoint
        first = _requested is None
        request(signum)
        if first:
            log.warning("signal %d: the sweep stops after the current job has written its checkpoint (Ctrl-C again "
                        "to abort at once)", signum)

    def __enter__(self) -> SweepStop:
        global _active, _requested
        if not self.in_process:
            return self
        _active, _requested = True, None
        if threading.current_thread() is threading.main_thread():
            for signum in self.SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handler)
        else:
            log.warning("the sweep does not run in the main thread: SIGTERM/SIGINT will not stop it cleanly")
        return self

    def __exit__(self, *exc: Any) -> None:
        global _active, _requested
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        if self.in_process:
            _active, _requested = False, None

    @staticmethod
    def requested() -> int | None:
        return requested()
