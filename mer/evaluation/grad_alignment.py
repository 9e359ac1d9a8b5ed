"""Gradient alignment between the task being trained and every earlier task (eval.grad_alignment).

Meta-Experience Replay is meant to make the gradients of new data agree with those of old data; this
measures that directly. At an evaluation while task i is trained, the gradient of the loss of task i and
of each earlier task j < i is computed on fixed held-out batches, and the record gets (docs/run_directory.md):

- `grad_cosine`: earlier task j -> cos(g_i, g_j), the cosine similarity of the two gradients over ALL
  trainable parameters (one flat vector);
- `grad_cosine_mean`: the mean of those cosines (null while there is no earlier task: task 0);
  a cosine with a zero gradient has no direction: it is null and left out of the mean;
- `grad_norm`: task -> ||g_task||_2 for task i and every earlier one.

The batch of a task is fixed: the first `eval.grad_alignment_windows` windows of its evaluation plan
(`mer.evaluation.windows.plan_windows` over its held-out span, `data.eval_tokens`), with the same scored targets
as the loss evaluation, so every evaluation of every run of one fingerprint measures the same tokens. The
loss is the mean token cross-entropy over those targets, in the training precision (bf16 autocast when
precision=bf16), with the model in eval mode (no dropout).

Training is not disturbed: the gradients come from `torch.autograd.grad`, which never touches the
parameters' `.grad`; the optimizer is not used; the torch RNG state (CPU and the device) is forked and
restored. A run with alignment on trains bit-identically to one with it off (tests/test_grad_alignment.py).

Cost: a forward and a backward of every window used, counted as evaluation FLOPs (`FlopCounter.add_eval`
with `backward=True`: 3x the forward rate, docs/design.md).

Data parallelism (DDP): every rank holds the whole model; rank r computes windows r, r+W, ... of each
batch and the per-parameter gradient sums are all-reduced, so the result is the single-process one (up
to summation order) and the work is split. A sharded model (parallel=fsdp) is refused: its parameters
are shards, and the flat gradient would need a gather of every parameter per task.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager

import numpy as np
import torch
import torch.nn.functional as F

from mer.evaluation.windows import WindowPlan

DEFAULT_WINDOWS = 8
"""eval.grad_alignment_windows when null."""
FSDP_REFUSAL = ("eval.grad_alignment needs every parameter's whole gradient on each rank, which a sharded model "
                "(parallel=fsdp) does not have: train with parallel=ddp (or one process), or set "
                "eval.grad_alignment=false")


def check_grad_alignment(cfg, sharded: bool) -> None:
    """Refuse eval.grad_alignment with a sharded model (parallel=fsdp over several processes), before any work."""
    if cfg.eval.grad_alignment and sharded:
        raise ValueError(FSDP_REFUSAL)


def build_grad_alignment(cfg, model: torch.nn.Module, eval_tokens: Sequence[np.ndarray], plans: Sequence[WindowPlan],
                         dist, autocast: Callable[[], AbstractContextManager], sharded: bool) -> GradAlignment | None:
    """The measurer of a run (`cfg`: its RunConfig, `dist`: its `mer.parallel.distributed.Distributed`), or None when
    eval.grad_alignment is off; refuses a sharded model (the module docstring)."""
    if not cfg.eval.grad_alignment:
        return None
    check_grad_alignment(cfg, sharded)
    windows = cfg.eval.grad_alignment_windows or DEFAULT_WINDOWS
    return GradAlignment(model, eval_tokens, plans, windows, cfg.eval.batch_size, dist.device, autocast,
                         dist.rank, dist.world_size, dist.sum)


class GradAlignment:
    """Measures, at an evaluation, the gradient of each task's fixed held-out batch and their cosines."""

    def __init__(self, model: torch.nn.Module, eval_tokens: Sequence[np.ndarray], plans: Sequence[WindowPlan],
                 n_windows: int, batch_size: int, device: torch.device,
                 autocast: Callable[[], AbstractContextManager], rank: int = 0, world_size: int = 1,
                 all_reduce: Callable[[torch.Tensor], torch.Tensor] | None = None) -> None:
        """`eval_tokens`/`plans`: each task's held-out span and its window plan; `n_windows`: windows per task batch
        (fewer when a task's plan has fewer); `batch_size`: windows per forward; `all_reduce`: sum over ranks."""
        self.model, self.device, self.autocast = model, device, autocast
        self.spans, self.plans = list(eval_tokens), list(plans)
        self.windows = [min(n_windows, plan.n_windows) for plan in self.plans]
        self.batch_size, self.rank, self.world_size = batch_size, rank, world_size
        self.all_reduce = all_reduce or (lambda t: t)
        self.params = [p for p in model.parameters() if p.requires_grad]

    def tokens_per_task(self, task: int) -> int:
        """Input tokens forwarded (and backpropagated) for task `task`'s batch, summed over ranks."""
        return self.windows[task] * self.plans[task].length

    def measure(self, current: int, names: Sequence[str]) -> tuple[dict, int]:
        """Gradients of task `current` and of every task before it -> (record fields, tokens forwarded).

        The record fields are `grad_cosine`, `grad_cosine_mean` and `grad_norm` (the module docstring)."""
        devices = [self.device] if self.device.type == "cuda" else []
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.random.fork_rng(devices=devices), torch.enable_grad():
                reference = self._gradient(current)  # g_i, fp32, one tensor per parameter
                norms = {names[current]: _norm(reference)}
                cosines: dict[str, float] = {}
                for j in range(current):
                    other = self._gradient(j)
                    norms[names[j]] = _norm(other)
                    cosines[names[j]] = _cosine(_dot(reference, other), norms[names[current]], norms[names[j]])
                    del other
        finally:
            self.model.train(was_training)
        finite = [c for c in cosines.values() if math.isfinite(c)]
        mean = float(np.mean(finite)) if finite else None
        tokens = sum(self.tokens_per_task(t) for t in range(current + 1))
        # JSON has no NaN: a cosine with a zero gradient (no direction) is null and left out of the mean.
        cosines_or_null = {name: (c if math.isfinite(c) else None) for name, c in cosines.items()}
        return {"grad_cosine": cosines_or_null, "grad_cosine_mean": mean, "grad_norm": norms}, tokens

    def _gradient(self, task: int) -> list[torch.Tensor]:
        """d(mean token loss over the task's fixed batch)/d(params), fp32, the same on every rank."""
        plan, span, size = self.plans[task], self.spans[task], self.batch_size
        mine = np.arange(self.rank, self.windows[task], self.world_size)  # this rank's windows of the batch
        sums = [torch.zeros_like(p, dtype=torch.float32) for p in self.params]
        for lo in range(0, len(mine), size):
            rows = mine[lo:lo + size]
            window = torch.from_numpy(span[plan.positions(rows)].astype(np.int64)).to(self.device)  # [b, T+1]
            # The loss evaluation's targets: what an earlier window of the plan scored is ignored (-100).
            unscored = torch.from_numpy(np.arange(plan.length) < plan.first_scored[rows][:, None]).to(self.device)
            targets = window[:, 1:].masked_fill(unscored, -100)  # [b, T]
            with self.autocast():
                logits = self.model(input_ids=window[:, :-1]).logits  # [b, T, V]
            loss_sum = F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), reduction="sum")
            grads = torch.autograd.grad(loss_sum, self.params, allow_unused=True)
            for acc, grad in zip(sums, grads, strict=True):
                if grad is not None:
                    acc += grad.float()
        n_targets = int(plan.n_scored[: self.windows[task]].sum())  # over all ranks' windows
        return [self.all_reduce(acc) / n_targets for acc in sums]


def _dot(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    """Inner product of two gradients over all parameters, accumulated in float64."""
    return float(sum(torch.sum(x.double() * y.double()) for x, y in zip(a, b, strict=True)))


def _norm(a: list[torch.Tensor]) -> float:
    return math.sqrt(_dot(a, a))


def _cosine(dot: float, norm_a: float, norm_b: float) -> float:
    """dot / (|a| |b|), NaN when a gradient is zero (no direction to compare)."""
    if norm_a == 0.0 or norm_b == 0.0:
        return math.nan
    return max(-1.0, min(1.0, dot / (norm_a * norm_b)))
