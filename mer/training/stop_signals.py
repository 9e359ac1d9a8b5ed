"""The trainer's own SIGTERM/SIGUSR1 handling: finish the current step, checkpoint, stop.

Slurm sends SIGUSR1 (with --signal) or SIGTERM before preemption or the time limit. The handler only records
the signal (on the trainer, and as the sweep's stop request so that no later job of a sweep starts); the
trainer stops after the step at which any rank had one (docs/sweeps.md)."""

from __future__ import annotations

import logging
import signal
import sys
from collections.abc import Callable

from mer.signals import stop_request

log = logging.getLogger(__name__)


def install_stop_handlers(record: Callable[[int], None]) -> None:
    """SIGTERM and SIGUSR1 call `record(signum)` and request the sweep's stop; only from the main thread."""
    def handler(signum, frame):
        record(signum)
        stop_request.request(signum)  # in a sweep: no later job starts, even if this one ends without a stop

    if sys.platform != "win32":
        try:
            signal.signal(signal.SIGTERM, handler)
            signal.signal(signal.SIGUSR1, handler)
        except ValueError:
            log.warning("not in the main thread: SIGTERM/SIGUSR1 will not checkpoint")
