"""Copy storage (`buffer.storage="copy"`): the tokens of kept blocks in an append-only memory-mapped file.

For data that cannot be read again. Rows are only ever appended, never overwritten, so a checkpoint taken
earlier still points at the tokens it held after training went on (the buffer maps its slots to rows).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np


def check_tokens(tokens: np.ndarray, k: int, block_len: int | None, dtype: np.dtype | None) -> np.ndarray:
    """`tokens` as an integer array [k, block_len] of `dtype` (the buffer's, set by its first add: None before)."""
    tokens = np.asarray(tokens)
    if tokens.ndim != 2 or tokens.shape[0] != k or not np.issubdtype(tokens.dtype, np.integer):
        raise ValueError(f"tokens must be an integer array [n_blocks={k}, block_len], got "
                         f"{tokens.dtype} {tokens.shape}")
    if block_len is not None and tokens.shape[1] != block_len:
        raise ValueError(f"tokens have blocks of {tokens.shape[1]} tokens, the buffer holds {block_len}")
    if dtype is not None and tokens.dtype != dtype:
        if tokens.size and (tokens.min() < 0 or tokens.max() > np.iinfo(dtype).max):
            raise ValueError(f"tokens do not fit the buffer's dtype {dtype} (set by the first add)")
        tokens = tokens.astype(dtype)
    return tokens


class TokenFile:
    """The token file of one rank: rows [n_rows, block_len] appended in order, mapped with room to grow."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.n_rows = 0
        self._mm: np.memmap | None = None
        self._block_len: int | None = None
        self._dtype: np.dtype | None = None

    def append(self, tokens: np.ndarray) -> np.ndarray:
        """Write tokens [k, block_len] (checked by `check_tokens`) after the last row; their rows int64 [k]."""
        k = tokens.shape[0]
        self._block_len, self._dtype = tokens.shape[1], tokens.dtype
        self._open(self.n_rows + k)
        rows = np.arange(self.n_rows, self.n_rows + k, dtype=np.int64)
        self._mm[self.n_rows : self.n_rows + k] = tokens
        self.n_rows += k
        return rows

    def read(self, rows: np.ndarray) -> np.ndarray:
        """Tokens [len(rows), block_len] of the given rows (> 0 of them), in the same order."""
        order = np.argsort(rows, kind="stable")  # read the file in increasing order
        out = np.empty((rows.shape[0], self._block_len), dtype=self._dtype)
        out[order] = self._mm[rows[order]]
        return out

    def reopen(self, n_rows: int, block_len: int | None, dtype: np.dtype | None) -> None:
        """Map the file as a checkpoint left it (`n_rows` rows); refused when the file lost rows."""
        self.n_rows, self._block_len, self._dtype, self._mm = n_rows, block_len, dtype, None
        if n_rows:
            size = os.path.getsize(self.path) if self.path.exists() else 0
            if size < n_rows * block_len * dtype.itemsize:
                raise ValueError(f"replay token file {self.path} is missing or shorter than the checkpoint's "
                                 f"{n_rows} rows; it must be kept with the checkpoint")
            self._open(n_rows)

    def flush(self) -> None:
        if self._mm is not None:
            self._mm.flush()

    def _open(self, need_rows: int) -> None:
        """Map the file with room for `need_rows` rows, growing it (never shrinking) if needed."""
        if self._mm is not None and self._mm.shape[0] >= need_rows:
            return
        row_bytes = self._block_len * np.dtype(self._dtype).itemsize
        have = self._mm.shape[0] if self._mm is not None else 0
        rows = max(need_rows, 2 * have, 1024)
        if self._mm is not None:
            self._mm.flush()
            self._mm = None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "ab") as f:  # creates the file if missing
            size = f.seek(0, os.SEEK_END)
            if size < rows * row_bytes:
                f.truncate(rows * row_bytes)
        rows = max(rows, os.path.getsize(self.path) // row_bytes)
        self._mm = np.memmap(self.path, dtype=self._dtype, mode="r+", shape=(rows, self._block_len))
