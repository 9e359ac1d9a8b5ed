"""Steps, tokens, Reptile interpolations and evaluations of a run, counted from its config alone (docs/plan.md).

The trainer's loop (`mer.training.trainer.Trainer.fit`) replayed in arithmetic, task by task, so that a plan of
95,000 steps per task costs microseconds:

- steps per task: `mer.compute.budget.steps_per_task` (the config's `task_steps`);
- new and replayed rows: every step trains B = optim.batch_size rows, round((1-alpha)*B) new and the
  rest replayed, except in task 0 where the buffer cannot yet replay: with `buffer.replay_current_task`
  (the default) the first step's replay slots are filled with new rows (the buffer then holds B blocks),
  without it every step of task 0 trains B new rows;
- Reptile: one interpolation whenever k steps have passed since the anchor, which is reset at step 0 and,
  with `reptile_reset_each_task`, at every task start; `reptile_at_task_end` adds one for a task's last,
  shorter window;
- evaluations: at step 0, every `eval.every` steps except on a task's last step, and at every task boundary.
"""

from __future__ import annotations

from dataclasses import dataclass

from mer.config.run_config import RunConfig


@dataclass(frozen=True)
class TaskCounts:
    """What one task of the run does."""

    name: str
    steps: int
    rows_new: int
    """Sequences of new data trained on."""
    rows_replay: int
    """Sequences drawn from the replay buffer."""
    reptile_steps: int
    """Reptile interpolations done while training this task (at its end included)."""
    evaluations: int
    """Evaluations during the task, its boundary evaluation included."""


@dataclass(frozen=True)
class RunCounts:
    tasks: tuple[TaskCounts, ...]
    evaluations: int
    """All evaluations of the run: the one at step 0 and those of every task."""

    @property
    def steps(self) -> int:
        return sum(t.steps for t in self.tasks)

    @property
    def reptile_steps(self) -> int:
        return sum(t.reptile_steps for t in self.tasks)

    @property
    def rows_new(self) -> int:
        return sum(t.rows_new for t in self.tasks)

    @property
    def rows_replay(self) -> int:
        return sum(t.rows_replay for t in self.tasks)


def count_run(cfg: RunConfig) -> RunCounts:
    """The counts of `cfg`'s run (see the module docstring)."""
    names = [t.name for t in cfg.data.tasks]
    steps = cfg.task_steps
    batch, n_new, n_replay = cfg.optim.batch_size, cfg.n_new_per_step, cfg.n_replay_per_step
    reptile_on = bool(cfg.k) and cfg.eps < 1
    every = cfg.eval.every
    tasks, start, since_anchor = [], 0, 0
    for index, (name, s) in enumerate(zip(names, steps, strict=True)):
        if index == 0 and n_replay:
            full_new = s if not cfg.buffer.replay_current_task else min(1, s)
            rows_new, rows_replay = full_new * batch + (s - full_new) * n_new, (s - full_new) * n_replay
        else:
            rows_new, rows_replay = s * n_new, s * n_replay
        reptile = 0
        if reptile_on:
            if cfg.reptile_reset_each_task:
                since_anchor = 0
            reptile, since_anchor = divmod(since_anchor + s, cfg.k)
            if cfg.reptile_at_task_end and since_anchor > 0:
                reptile, since_anchor = reptile + 1, 0
        # Steps start+1 .. start+s-1 that are multiples of `every` (not the task's last step), and the boundary.
        evaluations = (start + s - 1) // every - start // every + 1
        tasks.append(TaskCounts(name, s, rows_new, rows_replay, reptile, evaluations))
        start += s
    return RunCounts(tuple(tasks), 1 + sum(t.evaluations for t in tasks))
