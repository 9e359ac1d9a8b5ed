"""Several flat token files read as one array, without copying them: a pre-tokenized task of many files.

Token shards written by another tool come as many files (`source: tokens` with a folder or a glob). The streams
read a task's tokens as one 1-D array (a block id times seq_len is an offset into it, which is what keeps a replay
reference at 8 bytes), so the files are laid end to end in their sorted order, each memory-mapped; a block may
span two files, as it may span two documents.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np


class ConcatenatedTokens:
    """The 1-D concatenation of memory-mapped token files: `len`, slices and integer-array indexing, as the
    streams and the held-out span use a numpy array."""

    def __init__(self, paths: Sequence[Path], dtype: np.dtype) -> None:
        self.dtype = np.dtype(dtype)
        self.parts = [np.memmap(path, dtype=self.dtype, mode="r") for path in paths]
        sizes = np.array([part.size for part in self.parts], dtype=np.int64)
        self.starts = np.concatenate([[0], np.cumsum(sizes)])  # [n_files + 1]: where each file begins
        self.size = int(self.starts[-1])

    def __len__(self) -> int:
        return self.size

    @property
    def shape(self) -> tuple[int]:
        return (self.size,)

    def __getitem__(self, index):
        if isinstance(index, slice):
            start, stop, step = index.indices(self.size)
            if step != 1:
                return self[np.arange(start, stop, step, dtype=np.int64)]
            return self._range(start, stop)
        if isinstance(index, (int, np.integer)):
            position = int(index) + (self.size if index < 0 else 0)
            return self[np.array([position])][0]
        positions = np.asarray(index, dtype=np.int64)
        if positions.size and (positions.min() < 0 or positions.max() >= self.size):
            raise IndexError(f"token index out of range [0, {self.size})")
        flat = positions.ravel()
        owner = np.searchsorted(self.starts, flat, side="right") - 1  # which file holds each position
        out = np.empty(flat.shape, dtype=self.dtype)
        for part in np.unique(owner):
            mask = owner == part
            out[mask] = self.parts[part][flat[mask] - self.starts[part]]
        return out.reshape(positions.shape)

    def _range(self, start: int, stop: int) -> np.ndarray:
        pieces = []
        for part, begin in zip(self.parts, self.starts[:-1], strict=True):
            lo, hi = max(start - begin, 0), min(stop - begin, part.size)
            if lo < hi:
                pieces.append(np.asarray(part[lo:hi]))
        return np.concatenate(pieces) if pieces else np.empty(0, dtype=self.dtype)

    def max(self) -> int:
        return max(int(part.max()) for part in self.parts)

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        whole = self._range(0, self.size)
        return whole.astype(dtype) if dtype is not None else whole
