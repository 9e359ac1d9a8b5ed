"""A task split held in several shard files, read as one flat token array.

Sharded preparation (`mer.data.shard_build`) writes one shard per input piece; the streams, the held-out span and
the replay buffer's references (block ids) keep addressing one flat array of the split's tokens, so they work the
same whether a split is one file or a thousand. Nothing is copied: each part stays a `numpy.memmap`, and a read
gathers from the parts its indices fall in (a block may span the end of one shard and the start of the next).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


class ConcatenatedTokens:
    """The parts one after the other, indexed like a 1-D array: by an int, a slice or an integer array."""

    def __init__(self, parts: Sequence[np.ndarray]) -> None:
        if not parts:
            raise ValueError("ConcatenatedTokens needs at least one part")
        dtypes = {np.dtype(part.dtype) for part in parts}
        if len(dtypes) != 1:
            raise ValueError(f"the parts have different dtypes {sorted(str(d) for d in dtypes)}")
        self.parts = list(parts)
        self.dtype = dtypes.pop()
        sizes = np.array([len(part) for part in self.parts], dtype=np.int64)
        self.starts = np.concatenate([[0], np.cumsum(sizes)])  # part i holds [starts[i], starts[i + 1])

    def __len__(self) -> int:
        return int(self.starts[-1])

    @property
    def size(self) -> int:
        return len(self)

    @property
    def shape(self) -> tuple[int]:
        return (len(self),)

    @property
    def ndim(self) -> int:
        return 1

    def _gather(self, indices: np.ndarray) -> np.ndarray:
        flat = indices.reshape(-1).astype(np.int64)
        flat = np.where(flat < 0, flat + len(self), flat)
        if flat.size and (flat.min() < 0 or flat.max() >= len(self)):
            raise IndexError(f"index out of range for {len(self)} tokens")
        part_of = np.searchsorted(self.starts, flat, side="right") - 1
        out = np.empty(flat.shape, dtype=self.dtype)
        for part in np.unique(part_of):
            mask = part_of == part
            out[mask] = self.parts[part][flat[mask] - self.starts[part]]
        return out.reshape(indices.shape)

    def __getitem__(self, key):
        if isinstance(key, slice):
            start, stop, step = key.indices(len(self))
            if step != 1:
                return self._gather(np.arange(start, stop, step))
            if stop <= start:
                return np.empty(0, dtype=self.dtype)
            pieces = []
            for part, (lo, hi) in enumerate(zip(self.starts[:-1], self.starts[1:], strict=True)):
                if hi > start and lo < stop:
                    pieces.append(np.asarray(self.parts[part][max(start, lo) - lo:min(stop, hi) - lo]))
            return np.concatenate(pieces)
        if isinstance(key, (int, np.integer)):
            return self._gather(np.array([key]))[0]
        return self._gather(np.asarray(key))

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        whole = self[:]
        return whole if dtype is None else whole.astype(dtype)

    def max(self) -> int:
        """The largest token id, part by part (each part read once, as a memmap)."""
        return max(int(part.max()) for part in self.parts if len(part))

    def __eq__(self, other):  # elementwise, as numpy's arrays (tests count end-of-text tokens this way)
        return np.asarray(self) == other
