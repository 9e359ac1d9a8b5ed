"""The `files` source cut into pieces for sharded preparation (`mer.data.shard_build`).

A piece is a whole file, or, for a large uncompressed text or JSONL file in an encoding where a newline byte is
always a newline, a byte range of it of about `piece_bytes`, its ends moved to the next document start
(`mer.data.byte_range`). The cut depends only on the files and `piece_bytes`, never on how many workers prepare
them. The pieces in order yield the documents in the order the task's `train_documents` / `val_documents` give
them, so the concatenated shards are the same tokens as one preparation of the whole (tested).
"""

from __future__ import annotations

import codecs
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from mer.data.byte_range import line_boundary, paragraph_boundary
from mer.data.corpus import Piece


@dataclass(frozen=True)
class FileReading:
    """How `mer.data.sources.files` reads a file (passed in, so that it can import this module, not the reverse)."""

    kind: Callable[[Path], str]
    """A file's type: text, jsonl or parquet."""
    documents: Callable[..., Iterator[str]]
    """(path, text_field, encoding, errors, text_split, byte_range) -> the documents."""
    held_out: Callable[[str, float], bool]
    """The fixed hash rule: whether a document of a task without validation files is held out."""


# A newline byte is a newline in these, and never part of another character: safe to cut at.
SPLITTABLE_ENCODINGS = ("utf-8", "ascii", "latin-1", "iso8859", "cp125")


def _splittable(reading: FileReading, path: Path, text_split: str, encoding: str) -> bool:
    name = codecs.lookup(encoding).name
    plain = not path.name.lower().endswith(".gz")
    kind = reading.kind(path)
    by_lines = kind == "jsonl" or (kind == "text" and text_split in ("line", "paragraph"))
    return plain and by_lines and name.startswith(SPLITTABLE_ENCODINGS)


def _aligned(path: Path, start: int, end: int, paragraph: bool, encoding: str) -> tuple[int, int]:
    """The nominal range [start, end) moved to document starts at both ends."""
    size = path.stat().st_size
    with open(path, "rb") as handle:
        if paragraph:
            return (paragraph_boundary(handle, start, size, encoding), paragraph_boundary(handle, end, size, encoding))
        return line_boundary(handle, start, size), line_boundary(handle, end, size)


def _read(reading: FileReading, path: Path, nominal: tuple[int, int] | None, role: str, has_val_files: bool,
          val_fraction: float, text_field: str, text_split: str, encoding: str, errors: str) -> Iterator[tuple[str, str]]:
    byte_range = None
    if nominal is not None:
        paragraph = reading.kind(path) == "text" and text_split == "paragraph"
        byte_range = _aligned(path, *nominal, paragraph, encoding)
        if byte_range[0] >= byte_range[1]:
            return
    for text in reading.documents(path, text_field, encoding, errors, text_split, byte_range):
        if role == "val":
            yield "val", text
        elif has_val_files:
            yield "train", text
        else:  # the fixed hash rule of mer.data.sources.files, applied document by document as there
            yield ("val" if reading.held_out(text, val_fraction) else "train"), text


def file_pieces(reading: FileReading, train_paths: Sequence[Path], val_paths: Sequence[Path], val_fraction: float,
                text_field: str, text_split: str, encoding: str, errors: str, piece_bytes: int) -> list[Piece]:
    """The pieces of a `files` task: its training files, then its validation files, each whole or in byte ranges."""
    pieces = []
    for role, paths in (("train", train_paths), ("val", val_paths)):
        for path in paths:
            size = path.stat().st_size
            if size > piece_bytes and _splittable(reading, path, text_split, encoding):
                ranges: list[tuple[int, int] | None] = [(a, min(a + piece_bytes, size))
                                                        for a in range(0, size, piece_bytes)]
            else:
                ranges = [None]
            for nominal in ranges:
                key = f"{role}:{path}" + ("" if nominal is None else f":{nominal[0]}-{nominal[1]}")
                read = partial(_read, reading, path, nominal, role, bool(val_paths), val_fraction, text_field,
                               text_split, encoding, errors)
                pieces.append(Piece(key=key, read=read))
    return pieces
