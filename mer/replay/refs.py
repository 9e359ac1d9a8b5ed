"""Block references of the replay buffer: packing, per-task layout and the checkpoint encoding.

A reference is one int64 `task_index << 40 | block_id`. A buffer at paper scale holds 250M of them
(2 GB), so every pass here over all of them (checkpoint save, resume) goes in chunks of `CHUNK`
references: beyond its output it holds O(chunk) temporaries, never another copy of the buffer.

Checkpoint form of an int64 array (`encode_refs` / `decode_refs`), unchanged since the first
version, so checkpoints load across versions in both directions:
`{"values": int64 tensor, "run_lengths": int64 tensor or None}`. With `run_lengths` None, `values`
is the array itself ("raw"); otherwise the array is runs of consecutive values, `values[i]` the
first value of run i and `run_lengths[i]` its length ("runs": sequential block ids, copy-storage
rows). Only plain tensors, so `torch.load(weights_only=True)` reads it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

TASK_SHIFT = 40
"""Bits of a reference that hold the block id; the task index sits above them."""
MAX_BLOCK_ID = (1 << TASK_SHIFT) - 1
MAX_TASK_INDEX = (1 << (63 - TASK_SHIFT)) - 1
CHUNK = 1 << 22
"""References per chunk of the whole-buffer passes (32 MB of int64; a pass holds a few such
temporaries, ~40 bytes a reference when encoding ids without runs); read at call time."""


def pack_refs(task_index: int, block_ids: np.ndarray) -> np.ndarray:
    """References `task_index << 40 | block_id` as int64 [n]."""
    ids = np.asarray(block_ids, dtype=np.int64).reshape(-1)  # [n]
    if not 0 <= task_index <= MAX_TASK_INDEX:
        raise ValueError(f"task_index={task_index}: must be in [0, {MAX_TASK_INDEX}]")
    if ids.size and (ids.min() < 0 or ids.max() > MAX_BLOCK_ID):
        raise ValueError(f"block_ids must be in [0, 2**{TASK_SHIFT}), got [{ids.min()}, {ids.max()}]")
    return (np.int64(task_index) << TASK_SHIFT) | ids


def unpack_refs(refs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(task_index [n], block_id [n]) of int64 references."""
    refs = np.asarray(refs, dtype=np.int64)
    return refs >> TASK_SHIFT, refs & MAX_BLOCK_ID


def task_histogram(tasks: np.ndarray) -> list[tuple[int, int]]:
    """[(task, count)] of the task indices in `tasks` (int64 [k]), ascending; no sort when the range is small."""
    if tasks.size == 0:
        return []
    lo, hi = int(tasks.min()), int(tasks.max())
    if hi - lo < 1 << 16:  # a handful of tasks: one bincount, O(k)
        counts = np.bincount(tasks - lo)  # [hi - lo + 1]
        present = np.flatnonzero(counts)
        return [(int(t) + lo, int(counts[t])) for t in present]
    values, counts = np.unique(tasks, return_counts=True)
    return [(int(t), int(c)) for t, c in zip(values, counts)]


def draw_by_rejection(rng: np.random.Generator, refs: np.ndarray, bound: int, m: int, size: int) -> np.ndarray:
    """m distinct slots, uniform without replacement among the `size` slots of `refs` [n] holding tasks
    below `bound`, in random order; int64 [m]. Needs 0 < m <= size.

    Uniform slots of [0, n) in a row, keeping each eligible slot the first time it comes up: kept
    draws are uniform over the eligible slots, and dropping repeats makes each next one uniform over
    those not drawn yet, which is sampling without replacement. Candidates are drawn in batches sized
    from `size` (which the caller knows from its per-task counts) so one batch nearly always does:
    about m * n / size draws, a gather and a unique of that many.
    """
    n = refs.shape[0]
    taken = np.zeros(0, dtype=np.int64)  # [<= m] in draw order
    while taken.size < m:
        need, left = m - taken.size, size - taken.size
        # Expected draws for `need` new eligible slots are n * sum_i 1/(left - i) <= n * need / (left - need + 1).
        batch = int(1.25 * n * need / (left - need + 1)) + 64
        candidates = rng.integers(0, n, size=batch, dtype=np.int64)  # [batch]
        candidates = candidates[(refs[candidates] >> TASK_SHIFT) < bound]
        _, first = np.unique(candidates, return_index=True)
        candidates = candidates[np.sort(first)]  # distinct, in draw order
        if taken.size:
            candidates = candidates[~np.isin(candidates, taken)]
        taken = np.concatenate([taken, candidates[:need]])
    return taken


@dataclass
class TaskLayout:
    """What the buffer keeps about the tasks of its references (rebuilt in one pass on resume)."""

    monotone: bool = True
    """Whether task indices never decrease along the slots."""
    firsts: list[tuple[int, int]] = field(default_factory=list)
    """(task, index of its first ref) at every change of task along the slots; empty unless monotone
    (a reservoir changes task at almost every slot: millions of tuples nobody uses)."""
    counts: dict[int, int] = field(default_factory=dict)
    """References held per task."""


def task_layout(refs: np.ndarray, chunk: int | None = None) -> TaskLayout:
    """The `TaskLayout` of int64 references, in one pass in chunks: no full-size temporaries and no
    sort (np.unique would sort all 250M of them)."""
    chunk = chunk or CHUNK
    out, previous = TaskLayout(), None
    for start in range(0, refs.shape[0], chunk):
        tasks = refs[start:start + chunk] >> TASK_SHIFT  # [<= chunk]
        for task, count in task_histogram(tasks):
            out.counts[task] = out.counts.get(task, 0) + count
        if out.monotone:
            steps = np.diff(tasks)  # [<= chunk - 1]
            out.monotone = bool((steps >= 0).all()) and (previous is None or tasks[0] >= previous)
            if out.monotone:
                if previous is None or tasks[0] != previous:
                    out.firsts.append((int(tasks[0]), start))
                out.firsts += [(int(tasks[i + 1]), start + int(i) + 1) for i in np.flatnonzero(steps)]
            else:
                out.firsts = []
        previous = tasks[-1]
    return out


def encode_refs(a: np.ndarray, chunk: int | None = None) -> dict:
    """int64 [n] in checkpoint form (module docstring): runs when they are fewer than n/2, else raw.

    One pass in chunks. Runs are collected while they pay off: at the first chunk boundary where the
    run starts after the first are not fewer than half the values so far, they are dropped and the
    array is copied raw (stream-ordered block ids have no runs: one chunk of scanning and one copy).
    Temporaries beyond the output are O(chunk): the run arrays grow in place (realloc) by each
    chunk's runs and are the output when runs win; when they lose they are dropped before the raw
    copy is made, and were smaller than it. At the last chunk this is the rule of the first version
    (runs iff 2 * runs < n); it may pick raw where that one picked runs only when an early chunk has
    (almost) no runs and the rest compresses well. Either form loads with any version.
    """
    chunk, n = chunk or CHUNK, a.shape[0]
    if n == 0:
        return {"values": torch.zeros(0, dtype=torch.int64), "run_lengths": None}
    values = np.zeros(0, dtype=np.int64)  # [runs] first value of each run
    lengths = np.zeros(0, dtype=np.int64)  # [runs] index of each run's first value until the end, then lengths
    last, gave_up = None, False  # last value of the previous chunk: a run may go on across the boundary
    for start in range(0, n, chunk):
        part = a[start:start + chunk]  # [<= chunk] view
        local = np.flatnonzero(np.diff(part) != 1) + 1  # [<= chunk] run starts inside the chunk
        opens = last is None or int(part[0]) != last + 1  # Python ints: no overflow at 2**63 - 1
        have, new = values.shape[0], int(opens) + local.shape[0]
        values.resize(have + new, refcheck=False)  # in place (realloc); both arrays are private here
        lengths.resize(have + new, refcheck=False)
        if opens:
            values[have], lengths[have] = part[0], start
        np.take(part, local, out=values[have + int(opens):])
        np.add(local, start, out=lengths[have + int(opens):])
        last = int(part[-1])
        gave_up = 2 * (values.shape[0] - 1) >= start + part.shape[0]  # not half the size so far (first run free)
        if gave_up:
            break
    runs = values.shape[0]
    if gave_up or 2 * runs >= n:  # the first version's rule at the end
        del values, lengths  # before the raw copy is made
        return {"values": torch.from_numpy(a.copy()), "run_lengths": None}
    for lo in range(0, runs - 1, chunk):  # lengths[i] = first[i+1] - first[i], reading ahead of the writes
        hi = min(lo + chunk, runs - 1)
        lengths[lo:hi] = lengths[lo + 1:hi + 1] - lengths[lo:hi]
    lengths[runs - 1] = n - lengths[runs - 1]
    return {"values": torch.from_numpy(values), "run_lengths": torch.from_numpy(lengths)}


def decode_refs(d: dict, chunk: int | None = None) -> np.ndarray:
    """The int64 array of a checkpoint form: a fresh array (the caller may hold and modify it).

    Runs are expanded into the output in pieces of at most `chunk` values: no full-size temporaries.
    """
    chunk = chunk or CHUNK
    if d["run_lengths"] is None:
        return d["values"].numpy().astype(np.int64)  # a copy: the state dict keeps its own tensor
    values = np.asarray(d["values"].numpy(), dtype=np.int64)  # [runs]
    lengths = np.asarray(d["run_lengths"].numpy(), dtype=np.int64)  # [runs]
    out = np.empty(int(lengths.sum()), dtype=np.int64)
    pos, i = 0, 0
    while i < lengths.shape[0]:
        ends = np.cumsum(lengths[i:i + chunk])  # [<= chunk] end of each run, relative to pos
        j = int(np.searchsorted(ends, chunk, side="right"))  # runs that fit in one piece of `chunk` values
        if j == 0:  # run i alone is longer than a piece: write it in pieces
            first, length = int(values[i]), int(lengths[i])
            for lo in range(0, length, chunk):
                hi = min(lo + chunk, length)
                out[pos + lo:pos + hi] = np.arange(first + lo, first + hi, dtype=np.int64)
            pos, i = pos + length, i + 1
            continue
        total = int(ends[j - 1])
        starts = ends[:j] - lengths[i:i + j]  # [j] start of each run in the piece
        # value at piece offset p of run r: values[r] + (p - starts[r])
        out[pos:pos + total] = np.repeat(values[i:i + j] - starts, lengths[i:i + j]) + np.arange(total, dtype=np.int64)
        pos, i = pos + total, i + j
    return out
