"""Stop signals that arrive while a run starts: preparing data, building the model, the first evaluation.

The trainer handles SIGTERM and SIGUSR1 itself once training runs (finish the step, checkpoint, stop), but
before that there is nothing to checkpoint, and the default action would kill the process without a word,
leaving summary.json at `running`. Inside `stop_on_signals()` the first SIGTERM, SIGUSR1 or SIGINT raises
`StopSignal` at once, so the run records `stopped` on its way out (`mer.launch.runner`); a later one is ignored
while that is written. Only signals left at their default action are taken: a handler installed by
someone else (a sweep that stops after its current job) stays in charge. The handlers the block found are
restored when it ends (a multirun runs several jobs in one process, and the trainer's handlers must not
outlive its job).
"""

from __future__ import annotations

import logging
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from mer.rundir.status import StopSignal

log = logging.getLogger(__name__)
STOP_SIGNALS = ("SIGTERM", "SIGUSR1", "SIGINT")


class StopSignals:
    """What `stop_on_signals()` yields: `hold()` once the run is on its way out, so that no signal interrupts the
    writing of its final status (a signal is then only ignored)."""

    def __init__(self) -> None:
        self.holding = False

    def hold(self) -> None:
        self.holding = True


@contextmanager
def stop_on_signals() -> Iterator[StopSignals]:
    state = StopSignals()

    def handler(signum, frame):
        if state.holding:  # the run is already on its way out, writing its status: let it finish
            return
        state.hold()
        raise StopSignal(signum)

    previous = {}
    if sys.platform != "win32":
        try:
            for name in STOP_SIGNALS:
                number = getattr(signal, name)
                # A handler someone else installed (a sweep that stops after the current job) stays in charge.
                if signal.getsignal(number) in (signal.SIG_DFL, signal.default_int_handler):
                    previous[number] = signal.signal(number, handler)
        except ValueError:  # not the main thread: signals cannot be handled here
            log.warning("not in the main thread: a stop signal during start-up will not record the status")
    try:
        yield state
    finally:
        for number, old in previous.items():
            signal.signal(number, old)
