"""bench_buffer_scale.py's data: one synthetic token shard on disk, readers that map any task's block ids
onto it (or return zeros), pseudo-random block-id orders without materialising a permutation, and a
checksum of the buffer's references for the checkpoint round trip."""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

import numpy as np

from mer.data.stream import TaskStream
from mer.model.llama import PRESET_VOCAB
from mer.replay.buffer import ReplayBuffer

VOCAB = PRESET_VOCAB["560m"]


def write_shard(path: Path, n_tokens: int, seed: int, chunk: int = 1 << 26) -> float:
    """n_tokens random uint16 token ids (< VOCAB) written in chunks; seconds (including fsync)."""
    rng = np.random.default_rng(seed)
    started = time.perf_counter()
    with open(path, "wb") as f:
        for start in range(0, n_tokens, chunk):
            rng.integers(0, VOCAB, size=min(chunk, n_tokens - start), dtype=np.uint16).tofile(f)
        f.flush()
        os.fsync(f.fileno())
    return time.perf_counter() - started


def write_shards(directory: Path, n_tokens: int, n_shards: int, seed: int) -> tuple[list[Path], float]:
    """The synthetic tokens as `n_shards` files of (nearly) equal size, as sharded preparation writes a large task
    (`train-NNNNN.bin`, or `train.bin` for one); (paths, seconds)."""
    paths = [directory / ("train.bin" if n_shards == 1 else f"train-{i:05d}.bin") for i in range(n_shards)]
    bounds = np.linspace(0, n_tokens, n_shards + 1).astype(np.int64)
    seconds = sum(write_shard(path, int(hi - lo), seed + i)
                  for i, (path, lo, hi) in enumerate(zip(paths, bounds[:-1], bounds[1:], strict=True)))
    return paths, seconds


def open_tokens(paths: list[Path]):
    """The task's tokens as the trainer reads them: one memmap, or the shards as one array (`mer.data.token_view`)."""
    from mer.data.token_view import ConcatenatedTokens

    parts = [np.memmap(path, dtype=np.uint16, mode="r") for path in paths]
    return parts[0] if len(parts) == 1 else ConcatenatedTokens(parts)


def madvise_tokens(tokens, advice: int) -> None:
    for part in getattr(tokens, "parts", [tokens]):
        part._mmap.madvise(advice)


class ModuloReader:
    """BlockReader over ONE real shard for every task: block b of task t is block (b + t*stride) mod n_blocks."""

    def __init__(self, stream: TaskStream) -> None:
        self.stream, self.n_blocks = stream, stream.n_blocks
        self.stride = stream.n_blocks // 5 + 7919  # tasks start at different places of the file

    def read_blocks(self, task_index: int, block_ids: np.ndarray) -> np.ndarray:
        ids = (np.asarray(block_ids, dtype=np.int64) + task_index * self.stride) % self.n_blocks  # [m]
        return self.stream.read(ids)  # [m, seq_len + 1]


class ZeroReader:
    """BlockReader returning zeros: times the buffer's own work (draw, bookkeeping) without reads."""

    def __init__(self, block_len: int) -> None:
        self.block_len = block_len

    def read_blocks(self, task_index: int, block_ids: np.ndarray) -> np.ndarray:
        return np.zeros((len(block_ids), self.block_len), dtype=np.uint16)


def affine_perm(lo: int, hi: int, start: int, stop: int) -> np.ndarray:
    """Positions [start, stop) of a fixed pseudo-random permutation of [lo, hi) (i -> a*i + c mod m):
    ids in a shuffled order like a stream's, without materialising a 50M permutation."""
    m = hi - lo
    a = int(m * 0.6180339887) | 1
    while math.gcd(a, m) != 1:
        a += 2
    i = np.arange(start, stop, dtype=np.int64)
    return lo + (a * i + 12345) % m


def task_chunks(task: int, n_real: int, per_task: int, order: str, chunk: int):
    """Block ids of the synthetic part of `task` in chunks: task 0 from n_real on (its real blocks are
    added before), other tasks from 0; `order` 'stream' (shuffled) or 'sequential'."""
    lo = n_real if task == 0 else 0
    for start in range(0, per_task - lo, chunk):
        stop = min(start + chunk, per_task - lo)
        if order == "sequential":
            yield np.arange(lo + start, lo + stop, dtype=np.int64)
        else:
            yield affine_perm(lo, per_task, start, stop)


def held(buffer: ReplayBuffer) -> np.ndarray:
    """A view (not a copy: `refs()` would copy 2 GB at 250M) of the held references."""
    return buffer._refs[: len(buffer)]


def checksum(refs: np.ndarray, chunk: int = 1 << 24) -> int:
    """Order-sensitive checksum of int64 [n] in chunks (no full-size temporaries)."""
    total = 0
    for start in range(0, refs.shape[0], chunk):
        part = refs[start:start + chunk]
        weights = np.arange(start + 1, start + 1 + part.shape[0], dtype=np.int64)
        total = (total + int(np.sum(part * weights, dtype=np.int64))) % (1 << 61)
    return total
