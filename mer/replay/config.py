"""The replay buffer's settings (`buffer` in the run config, conf/buffer/*.yaml).

Apart from the buffer so that a new policy's setting is added here, next to the others, and the checks that
refuse a setting before any work is done read the policy registry instead of a list of names.
"""

from __future__ import annotations

from dataclasses import dataclass

from mer.replay.policies import POLICIES


def _positive_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


@dataclass
class BufferConfig:
    """Replay buffer settings (the replay ratio `alpha` belongs to the trainer)."""

    policy: str = "all"
    """What the buffer keeps (docs/replay_policies.md): "all": every block seen; "reservoir": a uniform sample
    of `capacity` blocks (Algorithm R); "task_quota": `capacity` blocks shared equally by the tasks."""
    capacity: int | None = None
    """Number of blocks (sequences) the buffer holds at most; required by the policies that cap the buffer
    ("reservoir", "task_quota"), unused by "all"."""
    storage: str = "reference"
    """"reference": hold (task, block id) and re-read the tokens (8 bytes a block); "copy": also copy the
    tokens to a memory-mapped file under the run's directory (for data that cannot be read again)."""
    replay_current_task: bool = True
    """Whether replay may draw the current task's already-seen blocks, or only earlier tasks' blocks."""
    prefetch: bool = False
    """Read the next replay sample in a background thread (draws are identical either way)."""

    def __post_init__(self) -> None:
        if self.policy not in POLICIES:
            raise ValueError(f"buffer.policy={self.policy!r}: choose one of {', '.join(map(repr, POLICIES))}")
        if POLICIES[self.policy].needs_capacity and not _positive_int(self.capacity):
            raise ValueError(
                f"buffer.capacity={self.capacity!r}: policy {self.policy!r} needs a positive number of blocks, "
                f"e.g. buffer.capacity=100000"
            )
        if self.capacity is not None and not _positive_int(self.capacity):
            raise ValueError(f"buffer.capacity={self.capacity!r}: must be a positive number of blocks or null")
        if self.storage not in ("reference", "copy"):
            raise ValueError(f"buffer.storage={self.storage!r}: choose 'reference' or 'copy'")
