"""Streams of fixed-length training blocks over memory-mapped token shards.

A block is `seq_len + 1` consecutive tokens (inputs and shifted targets); block `b` of a shard starts
at token `b * seq_len`, so consecutive blocks share one token and every token is a target once.
A block id (an int) is all that is needed to read it again, which is what lets the replay buffer keep
8-byte references instead of copies.

The order is a seeded permutation per epoch, computed position by position (`shuffled_index`), so a
task of 50M blocks needs no 400 MB permutation table. Position counts blocks consumed by ALL data-parallel
ranks together: at every draw rank r takes its own slice of the next `n * world_size` positions, so
ranks read disjoint blocks, and the position (the whole state) is the same on every rank.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mer.compute.budget import new_blocks_needed, steps_per_task
from mer.data.corpus import DataError
from mer.data.shards import ShardInfo

_MIX_1, _MIX_2 = np.uint64(0xFF51AFD7ED558CCD), np.uint64(0xC4CEB9FE1A85EC53)


def _mix(z: np.ndarray) -> np.ndarray:
    """A 64-bit finalizer (MurmurHash3's fmix64): every input bit flips about half the output bits."""
    z = z ^ (z >> np.uint64(33))
    z = z * _MIX_1
    z = z ^ (z >> np.uint64(33))
    z = z * _MIX_2
    return z ^ (z >> np.uint64(33))


def shuffled_index(positions: np.ndarray, n: int, seed: tuple[int, ...], rounds: int = 4) -> np.ndarray:
    """Position -> block id under a seeded pseudo-random permutation of range(n), in O(1) memory.

    A Feistel network is a bijection on the 2**bits integers of its domain whatever its round function;
    "cycle walking" (apply it again while the result is >= n) restricts it to a bijection of range(n).
    The domain is at most 4n, so a position takes at most a few walks on average.
    """
    bits = max(2, int(n - 1).bit_length())
    bits += bits % 2  # two equal halves
    half, mask = np.uint64(bits // 2), np.uint64((1 << (bits // 2)) - 1)
    keys = np.random.default_rng(list(seed)).integers(0, 2**63, size=rounds, dtype=np.int64).astype(np.uint64)

    def feistel(x: np.ndarray) -> np.ndarray:
        left, right = x >> half, x & mask
        with np.errstate(over="ignore"):  # the mixer multiplies modulo 2**64 on purpose
            for key in keys:
                left, right = right, left ^ (_mix(right ^ key) & mask)
        return (left << half) | right

    out = feistel(np.asarray(positions, dtype=np.uint64))
    outside = out >= np.uint64(n)
    while outside.any():
        out[outside] = feistel(out[outside])
        outside = out >= np.uint64(n)
    return out.astype(np.int64)


class TaskStream:
    """Deterministic, seedable, resumable order of one task's training blocks."""

    def __init__(
        self,
        tokens: np.ndarray,
        seq_len: int,
        seed: int,
        task_index: int = 0,
        allow_repeat: bool = False,
        rank: int = 0,
        world_size: int = 1,
        name: str = "task",
    ) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} must be in [0, world_size={world_size})")
        self.tokens = tokens
        self.seq_len = seq_len
        self.block_len = seq_len + 1
        self.n_blocks = (len(tokens) - 1) // seq_len
        if self.n_blocks < 1:
            raise DataError(f"task {name!r}: {len(tokens)} training tokens do not fill one block of "
                            f"{self.block_len}; lower model.seq_len or give more text")
        self.seed, self.task_index, self.name = seed, task_index, name
        self.allow_repeat = allow_repeat
        self.rank, self.world_size = rank, world_size
        self.position = 0

    def _ids_at(self, positions: np.ndarray) -> np.ndarray:
        epochs = positions // self.n_blocks
        if not self.allow_repeat and epochs.size and epochs.max() > 0:
            raise DataError(f"task {self.name!r}: ran past the end of its {self.n_blocks} training blocks; "
                            "lower the budget or set data.allow_repeat=true")
        ids = np.empty(positions.size, dtype=np.int64)
        for epoch in np.unique(epochs):
            mask = epochs == epoch
            ids[mask] = shuffled_index(positions[mask] % self.n_blocks, self.n_blocks,
                                       (self.seed, self.task_index, int(epoch)))
        return ids

    def next_block_ids(self, n: int) -> np.ndarray:
        """Ids of this rank's next `n` blocks; advances the shared position by `n * world_size`."""
        start = self.position + self.rank * n
        ids = self._ids_at(np.arange(start, start + n, dtype=np.int64))
        self.position += n * self.world_size
        return ids

    def read(self, block_ids: np.ndarray) -> np.ndarray:
        """Tokens of the given blocks, shape [n, seq_len + 1], in the shard's dtype."""
        offsets = np.asarray(block_ids, dtype=np.int64)[:, None] * self.seq_len  # [n, 1]
        return np.asarray(self.tokens[offsets + np.arange(self.block_len)])  # [n, seq_len + 1]

    def next_blocks(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """This rank's next `n` blocks: (ids [n], tokens [n, seq_len + 1])."""
        ids = self.next_block_ids(n)
        return ids, self.read(ids)

    def state_dict(self) -> dict:
        return {"position": self.position, "n_blocks": self.n_blocks, "world_size": self.world_size}

    def load_state_dict(self, state: dict) -> None:
        if int(state["n_blocks"]) != self.n_blocks:
            raise DataError(f"task {self.name!r}: the checkpoint was made on a shard of {state['n_blocks']} blocks, "
                            f"this one has {self.n_blocks}; the data changed since the run started")
        if int(state.get("world_size", self.world_size)) != self.world_size:
            raise DataError(f"the checkpoint was made with world size {state['world_size']}, this job has "
                            f"{self.world_size}; resume with the same number of processes")
        self.position = int(state["position"])


def eval_span(tokens: np.ndarray, n_tokens: int | None, name: str = "task") -> np.ndarray:
    """The fixed held-out span of a task: the first `n_tokens` tokens of its validation split (all of them
    when None), a 1-D copy in the shard's dtype. It does not depend on the model: every model is scored
    on the same targets (`mer.evaluation.windows.plan_windows` cuts it into windows)."""
    if n_tokens is not None and n_tokens > len(tokens):
        raise DataError(f"task {name!r}: data.eval_tokens={n_tokens:,} is longer than its validation split of "
                        f"{len(tokens):,} tokens; lower data.eval_tokens to at most {len(tokens):,}, or set it to "
                        "null to evaluate on every task's whole validation split")
    if len(tokens) < 2:
        raise DataError(f"task {name!r}: the validation split has {len(tokens)} token(s), no target to score; "
                        "give more validation text")
    return np.array(tokens[:n_tokens])


@dataclass
class Task:
    """One task of a sequence: its stream, its held-out token span and its budget in optimizer steps."""

    name: str
    stream: TaskStream
    eval_tokens: np.ndarray
    """[n] the held-out span (`eval_span`): the first tokens of the validation split."""
    steps: int
    shards: ShardInfo


class TaskSequence:
    """The ordered tasks with their budgets, and the block reader the replay buffer uses."""

    def __init__(
        self,
        shards: list[ShardInfo],
        seq_len: int,
        new_blocks_per_step: int,
        seed: int,
        budget_tokens: list[int | None],
        budget_steps: int | None = None,
        allow_repeat: bool = False,
        eval_tokens: int | None = None,
        rank: int = 0,
        world_size: int = 1,
        replay_blocks_per_step: int = 0,
        replay_current_task: bool = True,
    ) -> None:
        if new_blocks_per_step < 1:
            raise ValueError("new_blocks_per_step must be >= 1")
        if new_blocks_per_step % world_size:
            raise ValueError(f"{new_blocks_per_step} new blocks per step do not split over {world_size} ranks")
        tokenizer_hashes = {s.manifest["tokenizer_hash"] for s in shards}
        if len(tokenizer_hashes) != 1:
            raise DataError("the tasks' shards were made with different tokenizers; prepare them together")
        self.tasks: list[Task] = []
        all_steps = steps_per_task(budget_tokens, budget_steps, seq_len, new_blocks_per_step, replay_blocks_per_step,
                                   replay_current_task)
        for index, (info, steps) in enumerate(zip(shards, all_steps, strict=True)):
            stream = TaskStream(info.tokens("train"), seq_len, seed, index, allow_repeat, rank, world_size, info.name)
            needed = new_blocks_needed(index, steps, new_blocks_per_step, replay_blocks_per_step, replay_current_task)
            if needed > stream.n_blocks and not allow_repeat:
                raise DataError(
                    f"task {info.name!r}: the budget needs {needed} blocks ({needed * seq_len:,} tokens) but the task "
                    f"has {stream.n_blocks} ({stream.n_blocks * seq_len:,} tokens); lower data.budget_tokens, "
                    "give more text, or set data.allow_repeat=true to train for more than one epoch"
                )
            held_out = eval_span(info.tokens("val"), eval_tokens, info.name)
            self.tasks.append(Task(info.name, stream, held_out, steps, info))
        self.new_blocks_per_step = new_blocks_per_step

    @property
    def names(self) -> list[str]:
        return [t.name for t in self.tasks]

    @property
    def total_steps(self) -> int:
        return sum(t.steps for t in self.tasks)

    def read_blocks(self, task_index: int, block_ids: np.ndarray) -> np.ndarray:
        """BlockReader protocol of the replay buffer: re-read blocks from the shards by id."""
        return self.tasks[task_index].stream.read(block_ids)

    def state_dict(self) -> dict:
        return {"streams": [t.stream.state_dict() for t in self.tasks]}

    def load_state_dict(self, state: dict) -> None:
        for task, stream_state in zip(self.tasks, state["streams"], strict=True):
            task.stream.load_state_dict(stream_state)
