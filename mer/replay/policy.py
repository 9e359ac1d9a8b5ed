"""The replay policy interface: which offered blocks the buffer keeps, and which held blocks they replace.

A policy decides what the buffer holds, and so what replay draws from: when the trainer offers k blocks of a
task (`ReplayBuffer.add`), which of them to keep and where. It answers with an `Admission`: offered blocks
appended to the held slots, and offered blocks written over held slots (replacing what was there). It sees the
held references, the number of blocks offered so far and the blocks held per task (`Held`), and may draw from
the admission generator it is handed. Its class attributes say whether it needs `buffer.capacity` and whether
it only appends (which lets the sampler draw from a prefix of the slots).

The buffer owns everything else, the same for every policy: the storage (references, or copies in a token
file), the per-task counts, the sampler and its generator (every draw is uniform without replacement over the
eligible held blocks), the checkpoint (`state_dict` / `load_state_dict`, which also holds the admission
generator) and prefetch. A policy holds no state of its own beyond its settings, so a resumed buffer decides as
the uninterrupted one did. Policies are registered by name in `mer.replay.policies.POLICIES`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import ClassVar, NamedTuple, Protocol

import numpy as np

NOTHING = np.zeros(0, dtype=np.int64)
"""An empty index array, for an `Admission` with nothing to append or to replace."""


class Settings(Protocol):
    """The `buffer` settings a policy reads: `BufferConfig` is one. Named by what policies read rather than
    imported, because BufferConfig's checks import the policies (a policy's new setting goes in both)."""

    capacity: int | None


class Held(NamedTuple):
    """What a policy sees of the buffer when blocks are offered (read-only)."""

    refs: np.ndarray
    """int64 [n]: the held references `task << 40 | block_id`, in slot order."""
    n_seen: int
    """Blocks offered before these (the stream position of the first offered block)."""
    counts: Mapping[int, int]
    """Blocks held per task; tasks holding none are absent."""


class Admission(NamedTuple):
    """A policy's answer for k offered blocks; indices are into the offered blocks (int64).

    `append` [a] are appended after the n held slots, in this order (slots n .. n + a - 1); then `replace` [r]
    are written over the distinct `slots` [r] (each < n + a), whose blocks leave the buffer. An offered block
    in neither array is dropped.
    """

    append: np.ndarray
    replace: np.ndarray
    slots: np.ndarray


class ReplayPolicy(ABC):
    """A replay policy (module docstring); subclasses set `name` and implement `admit`."""

    name: ClassVar[str]
    """The config's `buffer.policy` value that selects this policy."""
    needs_capacity: ClassVar[bool] = False
    """Whether the policy caps the buffer at `buffer.capacity` blocks (then the setting is required)."""
    append_only: ClassVar[bool] = False
    """Whether admissions only ever append: slots then stay in the order blocks were added, and the sampler
    may draw eligible blocks from a prefix of the slots in O(n) instead of by rejection."""

    def __init__(self, cfg: Settings) -> None:
        self.cfg = cfg

    @classmethod
    def check_run(cls, cfg: Settings, n_tasks: int) -> None:
        """Refuse (ValueError naming the fix) settings under which this policy could not act on a run of
        `n_tasks` tasks; called by the run config's checks before any work. Nothing to refuse by default."""

    @abstractmethod
    def admit(self, held: Held, task_index: int, k: int, rng: np.random.Generator) -> Admission:
        """Which of k > 0 offered blocks of task `task_index` (in stream order) to keep, and where.

        `rng` is the buffer's admission generator (checkpointed by the buffer); a policy that draws nothing
        leaves it untouched.
        """
