"""Experience-replay buffer: holds references to (or copies of) training blocks seen so far.

A block is one training sequence of a task's token stream, identified by its `block_id` (its
index in the task's stream of blocks). The buffer keeps, per held sequence, one int64 reference
`task_index << 40 | block_id` (8 bytes) and reads the tokens back through a `BlockReader` the
trainer passes in, so replaying 100B tokens of data costs megabytes, not the tokens again.
With `storage="copy"` the tokens are also written to an append-only memory-mapped file, for data
that cannot be read again.

What is kept is the replay policy's decision (`buffer.policy`, a class in mer/replay/policies/, interface in
mer/replay/policy.py, docs/replay_policies.md): every block (`all`), a uniform sample of `capacity` blocks
(`reservoir`), or `capacity` blocks shared equally by the tasks (`task_quota`). The buffer applies it and owns
the rest: storage, per-task counts, the sampler, the checkpoint and prefetch.

`sample(n, task)` draws uniformly WITHOUT replacement among the eligible held blocks (those of
earlier tasks, plus the current task's already-seen blocks if `replay_current_task`): every call is
one batch, never with a repeated row. Draws come from the buffer's own generator seeded from
`(seed, rank)`, so buffers with other ranks draw independent streams (the trainer gives every rank
rank 0: identical buffers, identical draws) and a run reproduces its draws, also after a resume
(`state_dict` holds the generator states). A draw depends only on the contents and the generator.

Cost of a draw of n blocks: when the eligible blocks are a prefix of the slots (every held block,
or an append-only policy such as `all` with tasks added in order) it is O(n). Otherwise (a
reservoir without the current task, tasks added out of order) the buffer uses its count of blocks
per task, kept exact by every `add`, and draws by rejection: uniform slots, keeping eligible ones
not drawn yet, O(n / eligible fraction); only when fewer than `16 * n` blocks are eligible does it
list them in one O(held) scan.

Prefetch: `prefetch(n, task)` draws the next sample at once (in program order, so the draw never
depends on timing) and reads its tokens in a background thread; the following `sample(n, task)`
returns it. If anything changes in between (an `add`, other arguments), the prefetched draw is
discarded and the generator rewound, so prefetch on and off give identical draws.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

import numpy as np

from mer.replay.config import BufferConfig
from mer.replay.copies import TokenFile, check_tokens
from mer.replay.policies import POLICIES
from mer.replay.policy import Admission, Held
from mer.replay.reader import BlockReader, read_referenced
from mer.replay.refs import (  # pack_refs, unpack_refs and TASK_SHIFT are also this module's API
    TASK_SHIFT,
    decode_refs,
    draw_by_rejection,
    encode_refs,
    pack_refs,
    task_histogram,
    task_layout,
    unpack_refs,
)

__all__ = ["REJECTION_MIN_RATIO", "BlockReader", "BufferConfig", "ReplayBuffer", "TASK_SHIFT", "draw_by_rejection",
           "pack_refs", "unpack_refs"]

REJECTION_MIN_RATIO = 16
"""Draw by rejection when at least this many times `n` blocks are eligible, else list the eligible
slots. At the threshold both cost about the same: expected draws are under n * held / (eligible - n)
= held / 15, and a draw (random gather) costs ~10x a scanned slot; measured at 10M held, n=256:
10 ms rejection vs 12 ms scan at 4096 eligible, 0.04 ms vs 18 ms at half of them eligible."""


@dataclass
class _Pending:
    """A prefetched draw: what it was drawn for, the generator state before it, and the read in flight."""

    key: tuple  # (n, current_task_index, window, buffer version)
    rng_state: dict
    refs: np.ndarray  # int64 [m]
    tokens: Future


def _grow(a: np.ndarray, need: int) -> np.ndarray:
    """`a` with room for at least `need` entries (doubling, so appends are amortised O(1))."""
    if need <= a.shape[0]:
        return a
    out = np.zeros(max(need, 2 * a.shape[0], 1024), dtype=a.dtype)
    out[: a.shape[0]] = a
    return out


def _rows_in_window(m: int, window: tuple[int, int, int] | None) -> slice:
    """Rows of a draw of m blocks inside `window=(lo, hi, total)`: the draw is rows [total - m, total)
    of the batch, so its row i is batch row total - m + i; None is the whole draw."""
    if window is None:
        return slice(0, m)
    lo, hi, total = window
    if not 0 <= lo <= hi <= total or m > total:
        raise ValueError(f"window={window} with a draw of {m}: need 0 <= lo <= hi <= total and m <= total")
    start = total - m
    return slice(max(lo - start, 0), max(hi - start, 0))


class ReplayBuffer:
    """Replay buffer of block references (and optionally token copies); see the module docstring."""

    def __init__(
        self,
        cfg: BufferConfig,
        reader: BlockReader | None,
        seed: int,
        rank: int = 0,
        storage_dir: Path | str | None = None,
    ):
        if cfg.storage == "reference" and reader is None:
            raise ValueError("buffer.storage='reference' needs a BlockReader to read the tokens back")
        if cfg.storage == "copy" and storage_dir is None:
            raise ValueError("buffer.storage='copy' needs a storage_dir for its token file (e.g. <run>/replay)")
        if seed < 0 or rank < 0:
            raise ValueError(f"seed={seed} and rank={rank} must be >= 0")
        self.cfg, self.reader, self.seed, self.rank = cfg, reader, seed, rank
        self.policy = POLICIES[cfg.policy](cfg)
        # Independent streams per rank and per purpose: [admission (the policy's), sampling].
        admit_seq, sample_seq = np.random.SeedSequence(entropy=seed, spawn_key=(rank,)).spawn(2)
        self._rng_admit = np.random.Generator(np.random.PCG64(admit_seq))
        self._rng_sample = np.random.Generator(np.random.PCG64(sample_seq))

        self._refs = np.zeros(0, dtype=np.int64)  # [allocated]; slots [0, _n) are held
        self._n = 0
        self._n_seen = 0  # blocks offered to the buffer (stream position of Algorithm R)
        # For an append-only policy with tasks added in order, slots are sorted by task: (task, first slot) per task.
        self._monotone = self.policy.append_only
        self._task_first: list[tuple[int, int]] = []
        self._task_counts: dict[int, int] = {}  # blocks held per task (kept exact on every add)
        self._version = 0  # bumped whenever the contents change
        self._eligible_cache: tuple[tuple[int, int], np.ndarray] | None = None  # (version, bound) -> slots
        self._block_len: int | None = None
        self._dtype: np.dtype | None = None

        # Copy storage: slot -> row of the append-only token file (mer/replay/copies.py).
        self._rows = np.zeros(0, dtype=np.int64)  # [allocated]
        self._file = TokenFile(Path(storage_dir) / f"replay-rank{rank}.tokens") if cfg.storage == "copy" else None

        self._pending: _Pending | None = None
        self._executor: ThreadPoolExecutor | None = None

    # ----------------------------------------------------------------------------------- contents

    def __len__(self) -> int:
        """Blocks held."""
        return self._n

    @property
    def n_seen(self) -> int:
        """Blocks offered to the buffer so far."""
        return self._n_seen

    def refs(self) -> np.ndarray:
        """A copy of the held references, int64 [len(self)], in slot order."""
        return self._refs[: self._n].copy()

    def add(self, task_index: int, block_ids: np.ndarray, tokens: np.ndarray | None = None) -> None:
        """Offer blocks of task `task_index` that were just trained on (in stream order); the policy decides
        which to keep.

        `tokens` [len(block_ids), block_len] is required with storage "copy" and ignored otherwise.
        """
        self._cancel_pending()
        refs = pack_refs(task_index, block_ids)  # [k]
        k = refs.shape[0]
        if self.cfg.storage == "copy":
            if tokens is None:
                raise ValueError("buffer.storage='copy': add() needs the tokens of the blocks")
            tokens = check_tokens(tokens, k, self._block_len, self._dtype)
            if self._block_len is None:
                self._block_len, self._dtype = tokens.shape[1], tokens.dtype
        if k == 0:
            return
        held = self._refs[: self._n]
        held.flags.writeable = False  # a read-only view for the policy
        admission = self.policy.admit(Held(held, self._n_seen, MappingProxyType(self._task_counts)),
                                      task_index, k, self._rng_admit)
        self._keep(task_index, refs, tokens, admission)
        self._n_seen += k
        self._version += 1

    def _keep(self, task_index: int, refs: np.ndarray, tokens: np.ndarray | None, admission: Admission) -> None:
        """Apply a policy's `Admission` to the held slots, the per-task counts and the token file."""
        append, replace, slots = admission
        a = append.shape[0]
        if replace.shape != slots.shape or (self.policy.append_only and replace.size):
            raise ValueError(f"policy {self.cfg.policy!r} replaced {replace.shape} blocks into {slots.shape} slots"
                             f"{' (it is append-only)' if self.policy.append_only else ''}")
        if a:
            if self._monotone:
                self._note_task(task_index)
            new = np.arange(self._n, self._n + a)
            self._refs = _grow(self._refs, self._n + a)
            self._refs[new] = refs[append]
            if tokens is not None:
                self._rows = _grow(self._rows, self._n + a)
                self._rows[new] = self._file.append(tokens[append])
            self._n += a
            self._count(task_index, a)
        if replace.size:
            if slots.min() < 0 or slots.max() >= self._n or np.unique(slots).size != slots.size:
                raise ValueError(f"policy {self.cfg.policy!r} replaced slots outside [0, {self._n}) or twice")
            for task, count in task_histogram(self._refs[slots] >> TASK_SHIFT):  # the blocks replaced
                self._count(task, -count)
            self._count(task_index, replace.size)
            self._refs[slots] = refs[replace]
            if tokens is not None:
                self._rows[slots] = self._file.append(tokens[replace])

    def _note_task(self, task_index: int) -> None:
        if not self._task_first or task_index > self._task_first[-1][0]:
            self._task_first.append((task_index, self._n))
        elif task_index < self._task_first[-1][0]:
            self._monotone = False  # a task came back: fall back to masks

    def _count(self, task_index: int, delta: int) -> None:
        count = self._task_counts.get(task_index, 0) + delta
        if count:
            self._task_counts[task_index] = count
        else:
            del self._task_counts[task_index]  # only tasks still held: their count is O(tasks) to sum

    # ----------------------------------------------------------------------------------- sampling

    def n_eligible(self, current_task_index: int) -> int:
        """Blocks that `sample(n, current_task_index)` may draw from."""
        bound = self._bound(current_task_index)
        prefix = self._eligible_prefix(bound)
        return prefix if prefix is not None else self._count_below(bound)

    def _bound(self, current_task_index: int) -> int:
        """Blocks of tasks below this are eligible."""
        return current_task_index + 1 if self.cfg.replay_current_task else current_task_index

    def _eligible_prefix(self, bound: int) -> int | None:
        """c when exactly the slots [0, c) are eligible (every held block, or an append-only policy such as
        `all` with tasks added in order), else None."""
        if max(self._task_counts, default=-1) < bound:  # the tasks held now (not ever): as after a resume
            return self._n
        if self._monotone:
            return next((first for task, first in self._task_first if task >= bound), self._n)
        return None

    def _count_below(self, bound: int) -> int:
        return sum(count for task, count in self._task_counts.items() if task < bound)

    def _eligible_slots(self, bound: int) -> np.ndarray:
        """Slots holding tasks < bound, ascending: one O(n) scan, cached until the contents change."""
        key = (self._version, bound)
        if self._eligible_cache is None or self._eligible_cache[0] != key:
            tasks = self._refs[: self._n] >> TASK_SHIFT  # [n]
            self._eligible_cache = (key, np.flatnonzero(tasks < bound))
        return self._eligible_cache[1]

    def _draw(self, n: int, current_task_index: int) -> np.ndarray:
        """Slots of a uniform sample without replacement of min(n, eligible) blocks, int64 [m].

        The path taken depends only on the contents (not on caches), so draws are the same on every
        rank and after a resume.
        """
        bound = self._bound(current_task_index)
        prefix = self._eligible_prefix(bound)
        size = prefix if prefix is not None else self._count_below(bound)
        m = min(int(n), size)
        if m <= 0:
            return np.zeros(0, dtype=np.int64)
        if prefix is not None:
            return self._rng_sample.choice(prefix, size=m, replace=False).astype(np.int64)  # [m] random order
        if size >= REJECTION_MIN_RATIO * m:
            return draw_by_rejection(self._rng_sample, self._refs[: self._n], bound, m, size)
        eligible = self._eligible_slots(bound)  # [size]
        return eligible[self._rng_sample.choice(size, size=m, replace=False)]

    def sample(self, n: int, current_task_index: int,
               window: tuple[int, int, int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Draw min(n, eligible) distinct held blocks: (refs int64 [m], tokens [m, block_len]).

        The trainer fills the rest of the batch with new data when m < n. An empty sample has
        tokens of shape [0, block_len] (block_len 0 while it is unknown).

        `window=(lo, hi, total)`: this process trains rows [lo, hi) of a batch of `total` rows whose
        last m rows are this draw (data parallelism: every rank draws the same m blocks, each reads
        only its own rows). The tokens are then those of the draw's rows inside the window only.
        """
        if n < 0:
            raise ValueError(f"n={n} must be >= 0")
        pending = self._pending
        if pending is not None and pending.key == (n, current_task_index, window, self._version):
            self._pending = None
            return pending.refs, pending.tokens.result()
        self._cancel_pending()
        slots = self._draw(n, current_task_index)
        return self._refs[slots], self._read(slots[_rows_in_window(len(slots), window)])

    def prefetch(self, n: int, current_task_index: int, window: tuple[int, int, int] | None = None) -> None:
        """Draw the next `sample(n, current_task_index, window)` now and read its tokens in the background.

        A no-op when `cfg.prefetch` is off. Call it after `add` for the step just done.
        """
        if not self.cfg.prefetch:
            return
        self._cancel_pending()
        state = self._rng_sample.bit_generator.state
        slots = self._draw(n, current_task_index)
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"replay-prefetch-{self.rank}")
        future = self._executor.submit(self._read, slots[_rows_in_window(len(slots), window)])
        self._pending = _Pending((n, current_task_index, window, self._version), state, self._refs[slots], future)

    def _cancel_pending(self) -> None:
        """Drop a prefetched draw that will not be used and rewind the generator to before it."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.tokens.exception()  # let the read finish; an error resurfaces when the draw is redone
            self._rng_sample.bit_generator.state = pending.rng_state

    def _read(self, slots: np.ndarray) -> np.ndarray:
        """Tokens [len(slots), block_len] of the given slots, in the same order."""
        if slots.shape[0] == 0:
            return np.zeros((0, self._block_len or 0), dtype=self._dtype or np.uint16)
        if self._file is not None:
            return self._file.read(self._rows[slots])
        out, dtype = read_referenced(self.reader, self._refs[slots])
        self._block_len, self._dtype = out.shape[1], dtype
        return out

    # --------------------------------------------------------------------------------------- state

    def state_dict(self) -> dict:
        """Contents, counters and generator states (a pending prefetch is rewound, to be redrawn)."""
        rng_sample = self._pending.rng_state if self._pending is not None else self._rng_sample.bit_generator.state
        if self._file is not None:
            self._file.flush()  # the checkpoint may point at rows written since the last flush
        return {
            "policy": self.cfg.policy,
            "storage": self.cfg.storage,
            "capacity": self.cfg.capacity,
            "n_seen": self._n_seen,
            "refs": encode_refs(self._refs[: self._n]),
            "rows": encode_refs(self._rows[: self._n]) if self.cfg.storage == "copy" else None,
            "n_rows": self._file.n_rows if self._file is not None else 0,
            "block_len": self._block_len,
            "dtype": None if self._dtype is None else np.dtype(self._dtype).name,
            "rng_admit": self._rng_admit.bit_generator.state,
            "rng_sample": rng_sample,
        }

    def load_state_dict(self, state: dict) -> None:
        for key in ("policy", "storage", "capacity"):
            if state[key] != getattr(self.cfg, key):
                raise ValueError(f"buffer.{key}={getattr(self.cfg, key)!r} but the checkpoint was written with "
                                 f"{state[key]!r}; resume with the same buffer settings")
        self._cancel_pending()
        # decode_refs returns a fresh array: hold it as is (no second copy; `add` grows it when needed).
        self._refs = decode_refs(state["refs"])
        self._n = self._refs.shape[0]
        self._n_seen = int(state["n_seen"])
        self._block_len = state["block_len"]
        self._dtype = None if state["dtype"] is None else np.dtype(state["dtype"])
        # What `add` keeps up to date is rebuilt from the references (one pass), not stored.
        layout = task_layout(self._refs[: self._n])
        self._task_counts = layout.counts
        self._monotone = self.policy.append_only and layout.monotone
        self._task_first = layout.firsts if self._monotone else []
        self._rng_admit.bit_generator.state = state["rng_admit"]
        self._rng_sample.bit_generator.state = state["rng_sample"]
        if self._file is not None:
            self._rows = decode_refs(state["rows"])  # a fresh array too, held as is
            self._file.reopen(int(state["n_rows"]), self._block_len, self._dtype)
        self._version += 1
        self._eligible_cache = None

    def close(self) -> None:
        """Finish a pending read, stop the prefetch thread and flush the token file."""
        self._cancel_pending()
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
        if self._file is not None:
            self._file.flush()

    def __enter__(self) -> ReplayBuffer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
