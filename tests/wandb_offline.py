"""Read W&B's offline run file (`run-<id>.wandb`) into wandb's own protobuf `Record`s (docs/trackers.md).

wandb 0.31 ships no Python reader of this file (the former `wandb.sdk.internal.datastore` is gone with the Go
core). The file is a 7-byte header (`:W&B`, magic 0xBEE1, version) then LevelDB's log format: 32 KiB blocks of
records, each `crc32c (4) | length (2, little endian) | type (1: full, 2: first, 3: middle, 4: last)` and its bytes;
a block's last < 7 bytes are padding. Every complete record is parsed with `wandb_internal_pb2.Record`.
"""
from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path

HEADER = b":W&B"
BLOCK = 32 * 1024
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def records(path: Path) -> Iterator:
    """Every record of the run file, in order."""
    from wandb.proto import wandb_internal_pb2

    data = Path(path).read_bytes()
    if data[:4] != HEADER:
        raise ValueError(f"{path} is not a W&B transaction log (header {data[:7]!r})")
    pos, pending = 7, b""
    while pos + 7 <= len(data):
        room = BLOCK - pos % BLOCK
        if room < 7:  # block trailer: padding
            pos += room
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if kind == 0 and length == 0:
            pos += room
            continue
        chunk = data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (FULL, FIRST):
            pending = chunk
        elif kind in (MIDDLE, LAST):
            pending += chunk
        else:
            raise ValueError(f"{path}: record type {kind} at byte {pos}")
        if kind in (FIRST, MIDDLE):
            continue  # the record goes on in the next block
        record = wandb_internal_pb2.Record()
        record.ParseFromString(pending)
        yield record
