"""`task_quota`: `capacity` blocks shared equally by the tasks, so a long task cannot crowd out short ones."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from mer.replay.policy import NOTHING, Admission, Held, ReplayPolicy, Settings
from mer.replay.refs import TASK_SHIFT


class TaskQuota(ReplayPolicy):
    """When k blocks of task t are offered, the tasks are those held plus t, T of them, and t's quota is
    q = capacity // T. The offered blocks are kept in order while t holds fewer than q; the rest are dropped.
    A kept block takes a free slot while fewer than `capacity` blocks are held; otherwise it replaces a held
    block of the task holding the most blocks (ties: the lowest task index), drawn uniformly from that task's.

    So no task grows past its quota by adding, room is made by shrinking the largest task first, and each task
    holds a uniform sample of the blocks it kept (its first offered: a uniform sample of its data when the
    stream is shuffled, as the trainer's is). A reservoir, by contrast, holds tasks in proportion to their
    length. An add that replaces blocks makes one pass over the held references (a reservoir's costs O(k)).
    """

    name: ClassVar[str] = "task_quota"
    needs_capacity: ClassVar[bool] = True

    @classmethod
    def check_run(cls, cfg: Settings, n_tasks: int) -> None:
        if cfg.capacity < n_tasks:  # a quota of capacity // T = 0 blocks: later tasks would never be kept
            raise ValueError(f"buffer.capacity={cfg.capacity} is smaller than the {n_tasks} tasks: with "
                             f"buffer.policy=task_quota each task keeps capacity // tasks blocks, 0 here; "
                             f"use buffer.capacity >= {n_tasks}")

    def admit(self, held: Held, task_index: int, k: int, rng: np.random.Generator) -> Admission:
        counts = dict(held.counts)
        quota = self.cfg.capacity // (len(counts) + (task_index not in counts))
        take = max(0, min(k, quota - counts.pop(task_index, 0)))  # t itself never gives up blocks
        n_free = min(take, self.cfg.capacity - held.refs.shape[0])
        given: dict[int, int] = {}  # task -> blocks it gives up
        for _ in range(take - n_free):
            task = max(counts, key=lambda u: (counts[u], -u))  # the most blocks, then the lowest index
            counts[task] -= 1
            given[task] = given.get(task, 0) + 1
        slots = [NOTHING]
        if given:
            tasks = held.refs >> TASK_SHIFT  # [n]
            for task in sorted(given):
                own = np.flatnonzero(tasks == task)  # [held by task] its slots
                slots.append(own[rng.choice(own.size, size=given[task], replace=False)])
        return Admission(np.arange(n_free, dtype=np.int64), np.arange(n_free, take, dtype=np.int64),
                         np.concatenate(slots))
