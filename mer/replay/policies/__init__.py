"""The replay policies by the name `buffer.policy` selects them with; one file per policy.

Adding a policy: a file here with a `ReplayPolicy` subclass, its line below and a conf/buffer/<name>.yaml
(docs/replay_policies.md). An explicit dict rather than discovery, so what a name runs is read in one place.
"""

from __future__ import annotations

from mer.replay.policies.keep_all import KeepAll
from mer.replay.policies.reservoir import Reservoir
from mer.replay.policies.task_quota import TaskQuota
from mer.replay.policy import ReplayPolicy

POLICIES: dict[str, type[ReplayPolicy]] = {cls.name: cls for cls in (KeepAll, Reservoir, TaskQuota)}
"""`buffer.policy` value -> policy class."""

__all__ = ["POLICIES", "KeepAll", "Reservoir", "TaskQuota"]
