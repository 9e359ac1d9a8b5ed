"""Optimizer steps per task from the budgets: one pure function, used by the config checks and the data.

The budget of a task is tokens of NEW data (`data.budget_tokens`, or a task's own `budget_tokens`), or
optimizer steps (`data.budget_steps`, the same for every task). A step trains `B = optim.batch_size`
sequences of `model.seq_len` tokens, of which `n_new = round((1 - alpha) * B)` are new and the rest replayed,
so a token budget gives

    steps = ceil(budget_tokens / (seq_len * n_new))

steps. One exception: with `buffer.replay_current_task=false` nothing can be replayed during the first task
(the buffer holds no earlier task yet), so its replay slots are filled with new data and every step of task 0
trains B new sequences: `steps_0 = ceil(budget_tokens / (seq_len * B))`, which keeps task 0 at its new-token
budget instead of spending up to 1/(1-alpha) times it.

The number of steps is what decides whether Reptile can fire (`reptile_fires`, checked by
`mer.config.run_config.RunConfig.reptile_refusal`): with the anchor reset at each task start, an interpolation needs `k`
steps inside one task.
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def steps_per_task(
    budget_tokens: Sequence[int | None],
    budget_steps: int | None,
    seq_len: int,
    n_new: int,
    n_replay: int,
    replay_current_task: bool = True,
) -> list[int]:
    """Optimizer steps of every task, in order (see the module docstring for the formula).

    `budget_tokens[i]` is task i's resolved new-token budget (None when `budget_steps` is set).
    """
    if budget_steps is not None:
        return [int(budget_steps)] * len(budget_tokens)
    steps = []
    for index, budget in enumerate(budget_tokens):
        if budget is None:
            raise ValueError(f"task {index} has no token budget and data.budget_steps is null")
        first_without_replay = index == 0 and n_replay > 0 and not replay_current_task
        per_step = seq_len * (n_new + n_replay if first_without_replay else n_new)
        steps.append(math.ceil(budget / per_step))
    return steps


def new_blocks_needed(task_index: int, steps: int, n_new: int, n_replay: int, replay_current_task: bool) -> int:
    """New blocks a task reads over its `steps` steps (for the check against the data it has).

    In task 0 the replay slots are filled with new blocks until the buffer can replay: for one step when the
    current task may be replayed (the buffer then holds the first step's blocks), for every step when not.
    """
    if task_index == 0 and n_replay:
        return steps * (n_new + n_replay) if not replay_current_task else steps * n_new + n_replay
    return steps * n_new


def reptile_fires(k: int | None, eps: float, steps: Sequence[int], reset_each_task: bool, at_task_end: bool) -> bool:
    """Whether Reptile is off or interpolates at least once in every task (in the run, without the reset).

    With the anchor reset at each task start an interpolation needs `k` steps inside one task, so every task
    must have at least `k` steps; without the reset the anchor carries over and the run needs `k` steps in all.
    `reptile_at_task_end` interpolates the last, shorter window of every task, so Reptile then always acts.
    """
    if not k or eps >= 1 or at_task_end:
        return True
    return (min(steps) if reset_each_task else sum(steps)) >= k


def reptile_refusal(
    k: int,
    task_names: Sequence[str],
    steps: Sequence[int],
    reset_each_task: bool,
    budget_hint: str,
    budget_fix: str,
    preset_fix: str | None = None,
) -> str:
    """Why Reptile with this `k` would never interpolate, for a setting `reptile_fires` said no to.

    `budget_hint` says where the steps come from, `budget_fix` how to give every task `k` steps, `preset_fix` (if
    any) a config that does. The first sentence says what is wrong and the first fix on its own (a sweep's table
    shows only that sentence, `mer.rundir.refusal.headline`); the rest gives the steps and every fix.
    """
    steps_text = ", ".join(f"{name} {n}" for name, n in zip(task_names, steps, strict=True))
    also = f", or {preset_fix.split(' (')[0]}" if preset_fix else ""
    if reset_each_task:
        short = [name for name, n in zip(task_names, steps, strict=True) if n < k]
        fits = min(steps)
        first = f"task(s) {', '.join(short)} have fewer than {k} optimizer steps; k<={fits} fits{also}"
        where = (f"With the anchor reset at every task start (reptile_reset_each_task=true) an interpolation needs "
                 f"k={k} optimizer steps inside one task")
    else:
        fits = sum(steps)
        first = f"the whole run has {fits} optimizer steps, fewer than k={k}; k<={fits} fits{also}"
        where = f"Without the anchor reset an interpolation needs k={k} optimizer steps in the whole run"
    fixes = [f"k<={fits}", budget_fix, *([preset_fix] if preset_fix else []),
             "reptile_at_task_end=true (also interpolate the last, shorter window at each task end)",
             "k=0 to run without Reptile"]
    return (f"k={k} cannot fire: {first}. {where} (steps per task: {steps_text}; {budget_hint}), so Reptile would "
            f"never interpolate and the run would equal k=0. Fix it with {', or '.join(fixes)}")


def min_budget_tokens_for(
    k: int, n_tasks: int, seq_len: int, n_new: int, n_replay: int, replay_current_task: bool, reset_each_task: bool
) -> int:
    """The smallest new-token budget per task (the same for every task) with which `k` fits (see reptile_fires)."""

    def fits(budget: int) -> bool:
        steps = steps_per_task([budget] * n_tasks, None, seq_len, n_new, n_replay, replay_current_task)
        return reptile_fires(k, 0.0, steps, reset_each_task, at_task_end=False)

    low, high = 1, k * seq_len * (n_new + n_replay)  # `high` gives every task >= k steps
    while low < high:  # the steps only grow with the budget: bisect
        middle = (low + high) // 2
        low, high = (low, middle) if fits(middle) else (middle + 1, high)
    return low
