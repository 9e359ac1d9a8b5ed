"""Continual-learning metrics computed from raw per-task validation losses (numpy only).

This is the ONE place where learned loss, retained loss, forgetting, backward transfer and the
forgetting curve are defined. The trainer calls `summary_metrics` to write `summary.json`, and
`analysis/` calls the same functions to recompute them from `metrics.jsonl`, so the two can never
disagree. The module imports nothing but numpy, so the analysis stays torch-free.

Every function takes the same three arrays, built from the `eval` lines of `metrics.jsonl` in
file order:

- ``losses``: float array ``[n_evals, n_tasks]``; ``losses[e, j]`` is the validation loss (nats)
  of task ``j`` at evaluation ``e``. Every evaluation measures every task, seen or not.
- ``eval_task_index``: int array ``[n_evals]``; the 0-based index of the task being trained at
  evaluation ``e`` (non-decreasing over the run).
- ``boundary``: bool array ``[n_evals]``; True for the evaluation taken right after training on
  task ``eval_task_index[e]`` ended. Metrics that need ``L_after``/``L_end`` require exactly one
  boundary evaluation per task, and it must be the last evaluation of that task.

Definitions (tasks ``j = 0..n-1``; see the design notes):

- ``L_after(j)``: loss of task j at task j's boundary evaluation.
- ``L_end(j)``: loss of task j at the boundary evaluation of the last task.
- learned loss (plasticity) = mean_j L_after(j); retained loss (stability) = mean_j L_end(j).
- forgetting of task j = L_end(j) - min of task j's loss over the evaluations from the start of
  task j on: the boundary evaluation of task j-1 (the weights task j starts from) and every
  evaluation with ``eval_task_index >= j``; always >= 0.
  The forgetting score is the mean over j < n-1 (the last task has had no time to be forgotten).
- backward transfer = mean over j < n-1 of L_after(j) - L_end(j) (positive = later tasks helped).
- forgetting curve: at each evaluation e, the mean over started tasks j <= eval_task_index[e]
  of (loss now - best loss of task j since the start of task j, as for forgetting).

With a single task the forgetting score and backward transfer are means over no tasks: NaN.
Non-finite losses (a diverged run) propagate as NaN; they are not an input error.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = [
    "validate",
    "boundary_rows",
    "loss_matrix",
    "learned_loss",
    "retained_loss",
    "forgetting_per_task",
    "since_task_start",
    "forgetting",
    "backward_transfer",
    "forgetting_curve",
    "summary_metrics",
]


def validate(
    losses: np.ndarray, eval_task_index: np.ndarray, boundary: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Check shapes and ordering; return the inputs as float/int/bool arrays.

    Raises ValueError naming the problem: wrong dimensions, length mismatch, a task index out of
    range, a task index that goes backwards, or a boundary flag that is not the last evaluation of
    its task. Missing boundaries are NOT an error here (a running run has none for later tasks);
    `boundary_rows` reports them.
    """
    losses = np.asarray(losses, dtype=float)
    if losses.ndim != 2:
        raise ValueError(f"losses must be 2-D [n_evals, n_tasks], got shape {losses.shape}")
    n_evals, n_tasks = losses.shape
    if n_evals == 0 or n_tasks == 0:
        raise ValueError(f"losses is empty (shape {losses.shape}): no evaluations or no tasks")
    idx_raw = np.asarray(eval_task_index)
    if idx_raw.shape != (n_evals,):
        raise ValueError(
            f"eval_task_index must have shape ({n_evals},) to match losses, got {idx_raw.shape}"
        )
    if not np.issubdtype(idx_raw.dtype, np.integer):
        if not np.all(np.equal(np.mod(idx_raw, 1), 0)):
            raise ValueError("eval_task_index must hold integers")
    idx = idx_raw.astype(int)
    bnd_raw = np.asarray(boundary)
    if bnd_raw.shape != (n_evals,):
        raise ValueError(f"boundary must have shape ({n_evals},) to match losses, got {bnd_raw.shape}")
    bnd = bnd_raw.astype(bool)
    if idx.min() < 0 or idx.max() >= n_tasks:
        raise ValueError(
            f"eval_task_index must lie in [0, {n_tasks - 1}] (one column per task), "
            f"got values in [{idx.min()}, {idx.max()}]"
        )
    if np.any(np.diff(idx) < 0):
        e = int(np.flatnonzero(np.diff(idx) < 0)[0]) + 1
        raise ValueError(
            f"eval_task_index goes backwards at evaluation {e} ({idx[e - 1]} -> {idx[e]}); "
            "evaluations must be in training order"
        )
    for e in np.flatnonzero(bnd):
        later_same_task = np.flatnonzero(idx[e + 1 :] == idx[e])
        if later_same_task.size:
            raise ValueError(
                f"boundary evaluation {e} of task {idx[e]} is followed by evaluation "
                f"{e + 1 + int(later_same_task[0])} of the same task; the boundary must be the "
                "last evaluation of its task"
            )
    return losses, idx, bnd


def boundary_rows(eval_task_index: np.ndarray, boundary: np.ndarray, n_tasks: int) -> np.ndarray:
    """Row index of each task's boundary evaluation, shape [n_tasks].

    Raises ValueError when a task has no boundary evaluation (the run stopped before that task
    ended) or more than one.
    """
    idx = np.asarray(eval_task_index, dtype=int)
    bnd = np.asarray(boundary, dtype=bool)
    rows = np.empty(n_tasks, dtype=int)
    for j in range(n_tasks):
        hits = np.flatnonzero(bnd & (idx == j))
        if hits.size == 0:
            raise ValueError(
                f"task {j} has no boundary evaluation (boundary=true with task_index={j}); "
                "the run is incomplete, so L_after/L_end are undefined"
            )
        if hits.size > 1:
            raise ValueError(
                f"task {j} has {hits.size} boundary evaluations (rows {hits.tolist()}); "
                "expected exactly one"
            )
        rows[j] = hits[0]
    return rows


def loss_matrix(losses: np.ndarray, eval_task_index: np.ndarray, boundary: np.ndarray) -> np.ndarray:
    """The [n_tasks, n_tasks] matrix R: row i = evaluation right after task i, column j = task j.

    ``R[j, j]`` is L_after(j) and the last row is L_end. It is the `loss_matrix` of summary.json.
    """
    losses, idx, bnd = validate(losses, eval_task_index, boundary)
    return losses[boundary_rows(idx, bnd, losses.shape[1])]


def learned_loss(losses: np.ndarray, eval_task_index: np.ndarray, boundary: np.ndarray) -> float:
    """Plasticity: mean over tasks of L_after(j), the loss right after training on the task."""
    return float(np.mean(np.diag(loss_matrix(losses, eval_task_index, boundary))))


def retained_loss(losses: np.ndarray, eval_task_index: np.ndarray, boundary: np.ndarray) -> float:
    """Stability: mean over tasks of L_end(j), the loss after the last task."""
    return float(np.mean(loss_matrix(losses, eval_task_index, boundary)[-1]))


def forgetting_per_task(
    losses: np.ndarray, eval_task_index: np.ndarray, boundary: np.ndarray
) -> np.ndarray:
    """Per task j: L_end(j) - min of task j's loss since the start of task j (see `since_task_start`).

    Shape [n_tasks]. The minimum includes L_end(j) itself, so values are >= 0 (for finite losses).
    Measured against the best loss ever reached, not L_after, because a task can keep improving
    after its boundary (forward/backward transfer) and then be forgotten.
    """
    losses, idx, bnd = validate(losses, eval_task_index, boundary)
    n_tasks = losses.shape[1]
    end = losses[boundary_rows(idx, bnd, n_tasks)[-1]]
    since_start = since_task_start(idx, bnd, n_tasks)  # [n_evals, n_tasks]
    best = np.array([np.min(losses[since_start[:, j], j]) for j in range(n_tasks)])
    return end - best


def since_task_start(eval_task_index: np.ndarray, boundary: np.ndarray, n_tasks: int) -> np.ndarray:
    """Bool [n_evals, n_tasks]: whether evaluation e was taken since the start of task j.

    Task j starts from the weights of task j-1's boundary evaluation, so that evaluation counts, and so
    does every evaluation with eval_task_index >= j (for task 0: from the first evaluation on).
    """
    idx = np.asarray(eval_task_index, dtype=int)[:, None]  # [n_evals, 1]
    bnd = np.asarray(boundary, dtype=bool)[:, None]
    tasks = np.arange(n_tasks)[None, :]  # [1, n_tasks]
    return (idx >= tasks) | (bnd & (idx == tasks - 1))


def forgetting(losses: np.ndarray, eval_task_index: np.ndarray, boundary: np.ndarray) -> float:
    """Forgetting score: mean of `forgetting_per_task` over all tasks but the last (NaN if one task)."""
    per_task = forgetting_per_task(losses, eval_task_index, boundary)
    return _mean_or_nan(per_task[:-1])


def backward_transfer(losses: np.ndarray, eval_task_index: np.ndarray, boundary: np.ndarray) -> float:
    """Mean over all tasks but the last of L_after(j) - L_end(j); positive = later tasks helped."""
    r = loss_matrix(losses, eval_task_index, boundary)
    return _mean_or_nan((np.diag(r) - r[-1])[:-1])


def forgetting_curve(losses: np.ndarray, eval_task_index: np.ndarray, boundary: np.ndarray) -> np.ndarray:
    """Forgetting over time, shape [n_evals]; needs no boundary, so it works on running runs too.

    At evaluation e with t = eval_task_index[e]: mean over j <= t of
    ``losses[e, j] - min(losses[s_j..e, j])``, where s_j is the boundary evaluation of task j-1 (the
    first evaluation for task 0): the best loss of task j since its training started.
    """
    losses, idx, bnd = validate(losses, eval_task_index, boundary)
    n_evals, n_tasks = losses.shape
    started = idx[:, None] >= np.arange(n_tasks)[None, :]  # [n_evals, n_tasks]
    masked = np.where(since_task_start(idx, bnd, n_tasks), losses, np.inf)
    best_so_far = np.minimum.accumulate(masked, axis=0)  # inf before a task starts
    gap = np.where(started, losses - best_so_far, 0.0)
    return gap.sum(axis=1) / started.sum(axis=1)


def summary_metrics(
    losses: np.ndarray,
    eval_task_index: np.ndarray,
    boundary: np.ndarray,
    task_names: Sequence[str] | None = None,
) -> dict[str, object]:
    """The `metrics` dict of summary.json.

    Keys: ``learned_loss``, ``retained_loss``, ``forgetting``, ``backward_transfer`` (floats) and
    ``forgetting_per_task`` (dict task name -> float; names default to "0", "1", ... when
    `task_names` is None). Raises ValueError for malformed input or a missing boundary.
    """
    losses, idx, bnd = validate(losses, eval_task_index, boundary)
    n_tasks = losses.shape[1]
    if task_names is None:
        names = [str(j) for j in range(n_tasks)]
    else:
        names = [str(n) for n in task_names]
        if len(names) != n_tasks:
            raise ValueError(f"got {len(names)} task names for {n_tasks} loss columns")
        if len(set(names)) != n_tasks:
            raise ValueError(f"task names must be unique, got {names}")
    per_task = forgetting_per_task(losses, idx, bnd)
    return {
        "learned_loss": learned_loss(losses, idx, bnd),
        "retained_loss": retained_loss(losses, idx, bnd),
        "forgetting": forgetting(losses, idx, bnd),
        "backward_transfer": backward_transfer(losses, idx, bnd),
        "forgetting_per_task": {name: float(v) for name, v in zip(names, per_task, strict=True)},
    }


def undefined_reasons(metrics: dict[str, object], n_tasks: int) -> dict[str, str]:
    """Why each non-finite value of `summary_metrics`' dict is undefined: name (`forgetting_per_task.<task>` for a
    task's) -> reason. summary.json stores those values as null (JSON has no NaN) with this as `metrics_undefined`."""
    flat = {name: value for name, value in metrics.items() if not isinstance(value, dict)}
    flat.update({f"forgetting_per_task.{task}": value
                 for task, value in dict(metrics.get("forgetting_per_task") or {}).items()})
    reasons = {}
    for name, value in flat.items():
        if value is not None and np.isfinite(value):
            continue
        if n_tasks < 2 and name in ("forgetting", "backward_transfer"):
            reasons[name] = "averages over every task but the last, and a run of one task has none"
        else:
            reasons[name] = "a loss it is computed from is not finite (the run diverged)"
    return reasons


def _mean_or_nan(values: np.ndarray) -> float:
    """Mean, or NaN for an empty array (without numpy's 'mean of empty slice' warning)."""
    return float(np.mean(values)) if values.size else float("nan")
