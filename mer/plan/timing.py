"""How fast this machine trains a model: measured on CPU, an assumed MFU on GPU (docs/plan.md).

- **CPU:** real training steps of the run's model (forward, loss, backward, gradient clipping, AdamW, as
  `mer.training.trainer.Trainer.train_step` does them, on random token ids, which cost what real ones cost) are
  timed after a warm-up step, at one row and at the micro-batch (or at as many rows as take about
  `STEP_SECONDS`, judged from the one-row step), the fastest of the repeats counting; the time of a micro-batch
  step is extrapolated on the line through the two (a fixed part per step and a part per row), and the rate is the
  training FLOPs of a step (`mer.compute.flops.estimate_flops`) over that time: six steps in all. Where this
  process got less than `BUSY_SHARE` of its threads' CPU time meanwhile (other processes held the cores), the plan
  says that the machine was busy and the time may be too long. A model whose single row would take
  more than 4 x `STEP_SECONDS` at the matmul rate, or whose weights, gradients, AdamW state and one row's
  activations would not fit in half the memory, is not built: its rate is then the measured fp32 matmul
  rate (`mer.compute.mfu.measured_cpu_flops`) times an assumed efficiency, `CPU_FALLBACK_EFFICIENCY`, and the plan
  says so.
- **GPU:** the data-sheet peak of the GPU (`mer.compute.mfu.GPU_PEAKS`; `peak_flops` overrides it) at the run's
  precision, times an assumed MFU (`plan_mfu`, 0.4 unless set), stated in the plan.

Evaluation FLOPs are assumed to run at the training rate per FLOP; checkpoint writes, data reading and
logging between steps are not timed (tests/test_plan.py checks the estimate of whole runs against their
measured wall time).
"""

from __future__ import annotations

import functools
import os
import time
from dataclasses import dataclass

from mer.compute.mfu import BUSY_SHARE

CPU_FALLBACK_EFFICIENCY = 0.3
"""Share of the measured matmul rate assumed for a CPU model too large to time (a stated assumption)."""
DEFAULT_PLAN_GPU = "H100"
"""The GPU of the GPU-hours column when the plan runs on a machine without one (`plan_gpu` overrides it)."""
STEP_SECONDS = 2.0
ONE_ROW_REPEATS = 3
"""Timed steps of one row (after the warm-up); the fastest counts."""
"""Rows are cut so that a timed step takes about this long at most (judged from a timed step of one row)."""


@dataclass(frozen=True)
class Rate:
    """Training FLOP/s of one device, and how the number was obtained (stated in the plan)."""

    flops_per_s: float
    how: str
    measured: bool
    disturbed: bool = False
    """Other processes held the CPU while it was measured (`how` says so): the rate may be low, the time long."""


def gpu_rate(gpu_name: str, precision: str, mfu: float, peak_override: float | None = None) -> Rate | None:
    """The assumed rate of one GPU named `gpu_name` (matched in mer.compute.mfu.GPU_PEAKS); None when its peak is unknown."""
    from mer.compute.mfu import peak_flops_from_table

    if peak_override is not None:
        return Rate(peak_override * mfu, f"assumed MFU {mfu:.0%} of peak_flops={peak_override:.4g} FLOP/s", False)
    peak = peak_flops_from_table(gpu_name, precision)
    if peak is None:
        return None
    return Rate(peak * mfu, f"assumed MFU {mfu:.0%} of the {gpu_name} {precision} data-sheet peak "
                            f"{peak / 1e12:.1f} TFLOP/s", False)


def _fallback_cpu_rate(reason: str) -> Rate:
    from mer.compute.mfu import cpu_rate

    peak = cpu_rate()
    return Rate(peak.flops_per_s * CPU_FALLBACK_EFFICIENCY,
                f"not timed ({reason}): assumed {CPU_FALLBACK_EFFICIENCY:.0%} of the {peak.describe()}, "
                f"{peak.flops_per_s / 1e9:.1f} GFLOP/s", False, peak.disturbed)


def busy_note(share: float, cores: int) -> str:
    """What the plan says of a timing during which this process got only `share` of the CPU time it could use."""
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"the machine was busy while timing (this process got {share:.0%} of the CPU time of its threads, load "
            f"{load:.1f} on {cores} cores): the estimate may be too long; plan again on a quieter machine")


def micro_batch_seconds(one_row: float, rows: int, many: float | None, micro_rows: int) -> float:
    """Seconds of a training step of `micro_rows` rows, from the step of one row (`one_row` s) and the step of `rows`
    rows (`many` s; None where only one row was timed): the line through the two, a fixed part plus a part per row.

    With one row alone no fixed part can be told apart, so every row costs a one-row step (an upper bound): one
    row's time must not stand for the whole micro-batch, which made a model slow enough to be timed at one row look
    faster than a smaller one."""
    if rows == 1 or many is None:
        return one_row * micro_rows
    per_row = (many - one_row) / (rows - 1)
    if per_row <= 0:  # noise on a busy machine: no fixed part can be told apart
        per_row = many / rows
    return one_row + per_row * (micro_rows - 1)


@functools.cache
def measured_cpu_rate(model_key: tuple, vocab_size: int, micro_rows: int, train_flops_per_token: int,
                      weight_decay: float, memory_limit: int) -> Rate:
    """Time training steps of the model `model_key` (`ModelConfig` fields as a tuple) on the CPU; cached per shape.

    `memory_limit`: bytes the model, its gradients, AdamW state and one row's activations may take."""
    import torch
    import torch.nn.functional as F

    from mer.compute.mfu import measured_cpu_flops
    from mer.model.llama import ModelConfig, build_model, estimate_parameters
    from mer.plan.memory import training_activation_bytes

    model_cfg = ModelConfig(**dict(model_key))
    seq_len = model_cfg.seq_len
    n_params, _ = estimate_parameters(model_cfg, vocab_size)
    per_row = training_activation_bytes(model_cfg, vocab_size, 1, "fp32", False)
    if 16 * n_params + per_row > memory_limit:
        return _fallback_cpu_rate(f"the model with one row of activations needs {(16 * n_params + per_row) / 2**30:.1f} "
                                  f"GiB, more than half this machine's memory")
    optimistic = measured_cpu_flops()  # an upper bound of the rate: a step takes at least flops / optimistic
    row_seconds = seq_len * train_flops_per_token / optimistic
    if row_seconds > 4 * STEP_SECONDS:
        return _fallback_cpu_rate(f"one row of {seq_len} tokens would take at least {row_seconds:.0f} s per step, at the "
                                  "matmul rate")
    generator = torch.Generator().manual_seed(0)
    model = build_model(model_cfg, vocab_size)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=weight_decay, foreach=True)

    def step(rows: int) -> float:
        batch = torch.randint(0, vocab_size, (rows, seq_len + 1), generator=generator)  # [rows, T+1]
        started = time.perf_counter()
        logits = model(input_ids=batch[:, :-1]).logits  # [rows, T, V]
        loss = F.cross_entropy(logits.float().flatten(0, 1), batch[:, 1:].flatten())
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return time.perf_counter() - started

    wall0, cpu0 = time.perf_counter(), time.process_time()
    step(1)  # warm-up: first-touch allocations, AdamW state
    # The fastest of the repeats, not their median: other processes only ever slow a step down, and the first
    # steps of a process still pay one-time costs, so the minimum is the step's own time (the median of two was
    # their mean, and a disturbed step made a smaller model look slower than a larger one).
    one_row = min(step(1) for _ in range(ONE_ROW_REPEATS))
    # A step costs a fixed part (Python, the AdamW update, the gradient clipping) plus a part per row: time it at
    # one row and at as many as fit in STEP_SECONDS (the whole micro-batch where it does), and extrapolate the
    # line to the micro-batch. Timing fewer rows alone would understate the rate of a larger batch.
    rows = max(1, min(micro_rows, int(STEP_SECONDS / one_row)))
    many = min(step(rows) for _ in range(2)) if rows > 1 else None
    seconds, timed = micro_batch_seconds(one_row, rows, many, micro_rows), ONE_ROW_REPEATS + (2 if rows > 1 else 0)
    threads = torch.get_num_threads()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    share = (time.process_time() - cpu0) / max((time.perf_counter() - wall0) * min(threads, cores), 1e-9)
    rate = micro_rows * seq_len * train_flops_per_token / seconds
    how = (f"{rows} rows" if rows == micro_rows else f"1 row, times the run's {micro_rows}" if rows == 1
           else f"1 and {rows} rows, extrapolated to the run's {micro_rows}")
    how = (f"measured: the fastest of {timed} timed training steps of this model on this CPU ({how} of {seq_len} "
           f"tokens, {seconds * 1000:.0f} ms per step of {micro_rows} rows, {threads} threads)")
    disturbed = share < BUSY_SHARE
    return Rate(rate, how + (f"; {busy_note(share, cores)}" if disturbed else ""), True, disturbed)
