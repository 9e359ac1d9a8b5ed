"""The `train` lines of metrics.jsonl: loss, throughput, data wait and the MFU since the previous line."""

from __future__ import annotations

import time

from mer.compute.flops import FlopCounter
from mer.compute.mfu import mfu


class MfuMeter:
    """Model FLOP utilisation over the steps between two train lines, without the time spent evaluating and
    checkpointing (the trainer's `overhead_s`), so an evaluation does not read as a slow step."""

    def __init__(self, peak_flops: float | None, world_size: int) -> None:
        self.peak_flops, self.world_size = peak_flops, world_size
        self.last: float | None = None  # the latest value, shown in the progress line
        self._then = (time.perf_counter(), 0, 0.0)

    def start(self, flops: FlopCounter, overhead_s: float) -> None:
        self._then = (time.perf_counter(), flops.flops_new + flops.flops_replay, overhead_s)

    def measure(self, flops: FlopCounter, overhead_s: float) -> float | None:
        now, done = time.perf_counter(), flops.flops_new + flops.flops_replay
        then, done_then, overhead_then = self._then
        self._then = (now, done, overhead_s)
        self.last = mfu(done - done_then, (now - then) - (overhead_s - overhead_then), self.peak_flops,
                        self.world_size)
        return self.last


def train_record(base: dict, loss: float, tokens_per_s: float, data_wait_s: float, utilisation: float | None) -> dict:
    return {**base, "loss": loss, "tokens_per_s": tokens_per_s, "data_wait_s": round(data_wait_s, 4),
            "mfu": None if utilisation is None else round(utilisation, 5)}
