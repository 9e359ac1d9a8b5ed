"""The step's loss without a host wait: read one step late, or where something is about to be written.

Reading a CUDA tensor's value (`.item()`, `.tolist()`) makes the host wait until the GPU has finished every
kernel queued before it: once per step, that keeps the CPU from queueing the next step while the GPU works
(docs/benchmarks.md). So the step's loss stays on the device: `put` starts a non-blocking copy into page-locked
host memory and records an event, and `take` waits for that event only, which is long done when the next step
has been queued. The NaN/inf check and the progress line use the value `take` returns, one step late; a log line,
an evaluation and a checkpoint `take` the current step's loss first, so nothing non-finite is ever written.
"""

from __future__ import annotations

import math

import torch


class NonFiniteLoss(ArithmeticError):
    """The loss of an optimizer step is NaN or infinite."""

    def __init__(self, step: int, value: float) -> None:
        super().__init__(f"the loss is {value} at step {step}")
        self.step, self.value = step, value


class PendingLoss:
    """At most one step's loss not yet read on the host; single-buffered (the trainer `take`s before `put`)."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self._host = torch.zeros((), dtype=torch.float64, pin_memory=self.cuda)
        self._event: torch.cuda.Event | None = None
        self._step: int | None = None
        self.last: float = float("nan")
        """The latest loss read (for the progress line)."""

    def put(self, step: int, loss: torch.Tensor) -> None:
        """Keep `loss` (a 0-dim float64 tensor on the device) of optimizer step `step` (1-based) to read later."""
        if self.cuda:
            self._host.copy_(loss, non_blocking=True)
            self._event = torch.cuda.Event()
            self._event.record()
        else:  # a CPU tensor is already computed: reading it later waits for nothing
            self._host = loss
        self._step = step

    def take(self) -> float | None:
        """The kept loss, or None when there is none; raises `NonFiniteLoss` when it is NaN or infinite."""
        if self._step is None:
            return None
        if self._event is not None:
            self._event.synchronize()  # waits for the copy only, not for what was queued after it
        step, value = self._step, float(self._host)
        self._step, self._event = None, None
        if not math.isfinite(value):
            raise NonFiniteLoss(step, value)
        self.last = value
        return value
