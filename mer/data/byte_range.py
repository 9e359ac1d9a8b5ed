"""A byte range of a file, read as a file: how a large text or JSONL file is cut into pieces prepared apart.

`line_boundary` and `paragraph_boundary` move a nominal offset to the next place where a document starts, the same
function for the piece that ends there and the one that starts there, so every document falls in exactly one piece
and a file's pieces give the documents of the whole file, in order.
"""

from __future__ import annotations

import io
from pathlib import Path


class RangeFile(io.RawIOBase):
    """The bytes [start, end) of `path`, as a readable raw file (wrap it in io.BufferedReader)."""

    def __init__(self, path: Path, start: int, end: int) -> None:
        super().__init__()
        self._handle = open(path, "rb")
        self._handle.seek(start)
        self._left = max(0, end - start)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        n = min(len(buffer), self._left)
        if n <= 0:
            return 0
        got = self._handle.readinto(memoryview(buffer)[:n]) or 0
        self._left -= got
        return got

    def close(self) -> None:
        self._handle.close()
        super().close()


def line_boundary(handle, offset: int, size: int) -> int:
    """The first line start at or after `offset` (0 and `size` stay)."""
    if offset <= 0:
        return 0
    if offset >= size:
        return size
    handle.seek(offset - 1)
    handle.readline()  # up to and including the first newline at or after offset - 1
    return min(handle.tell(), size)


def paragraph_boundary(handle, offset: int, size: int, encoding: str) -> int:
    """Just after the first blank line that starts at or after `offset`'s line boundary (where the paragraph
    reader of `mer.data.sources.files` holds no paragraph): a piece never cuts a paragraph in two."""
    position = line_boundary(handle, offset, size)
    if position in (0, size):
        return position
    handle.seek(position)
    while position < size:
        line = handle.readline()
        position = handle.tell()
        if not line.decode(encoding, "replace").strip():
            return position
    return size
