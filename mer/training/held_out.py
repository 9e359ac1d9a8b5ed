"""The held-out losses of an evaluation: every task's fixed span, scored through the same windows every time."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager

import numpy as np
import torch
import torch.nn.functional as F

from mer.compute.flops import FlopCounter
from mer.evaluation.windows import WindowPlan
from mer.parallel.distributed import Distributed


def held_out_losses(model: torch.nn.Module, tasks: Sequence, plans: Sequence[WindowPlan], dist: Distributed,
                    batch_size: int, sharded: bool, autocast: Callable[[], AbstractContextManager],
                    flops: FlopCounter) -> dict[str, float]:
    """Mean token loss per task name, counting every window's forward as evaluation FLOPs.

    The span is cut into windows of eval.context tokens, eval.stride apart, that score every target
    exactly once (`mer.evaluation.windows.plan_windows`), `batch_size` windows per forward. Rank r evaluates
    batches r, r+W, r+2W... of every task; the sums are added over ranks. Under FSDP a forward is
    collective, so a rank past the last batch runs one more on its first batch, uncounted."""
    device = dist.device
    # Loss sums stay on the device (no host sync per batch); the counts are known from the plans.
    sums = torch.zeros(len(tasks), dtype=torch.float64, device=device)
    counts = []
    for t, (task, plan) in enumerate(zip(tasks, plans)):
        n_batches = -(-plan.n_windows // batch_size)
        batches: list[int | None] = list(range(dist.rank, n_batches, dist.world_size))
        if sharded:  # as many forwards as rank 0, which has the most batches; None: uncounted
            batches += [None] * (len(range(0, n_batches, dist.world_size)) - len(batches))
        for b in batches:
            rows = slice((b or 0) * batch_size, (b or 0) * batch_size + batch_size)
            ids = task.eval_tokens[plan.positions(rows)].astype(np.int64)  # [b, T+1] inputs and targets
            window = torch.from_numpy(ids).to(device)
            # Targets an earlier window scored are ignored (-100); offsets before `lo` are scored by no window
            # of this batch, so the model computes no logits for them (most of a stride < context window).
            first = plan.first_scored[rows]  # [b]
            lo = int(first.min())
            unscored = torch.from_numpy(np.arange(lo, plan.length) < first[:, None]).to(device)  # [b, T-lo]
            targets = window[:, 1 + lo:].masked_fill(unscored, -100)  # [b, T-lo]; -100: the ignore_index
            with autocast():  # logits [b, T-lo, V]: the offsets from lo on only
                logits = model(input_ids=window[:, :-1], logits_to_keep=plan.length - lo).logits
            loss = F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), reduction="sum")
            if b is not None:
                sums[t] += loss.double()
        counts.append(plan.n_tokens - 1)
        flops.add_eval(plan.n_windows * plan.length)  # every window's forward, scored or not
    totals = dist.sum(sums).tolist()  # [n_tasks]
    return {task.name: total / count for task, total, count in zip(tasks, totals, counts)}
