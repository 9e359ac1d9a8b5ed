"""Read W&B's offline transaction log (`run-<id>.wandb`) with wandb's own protobuf `Record`."""
from __future__ import annotations
import struct
from collections.abc import Iterator
from pathlib import Path

HEADER = b":W&B"
BLOCK = 32 * 1024
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4

def records(path: Path) -> Iterator:
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
        if kind == FULL:
            pending = chunk
        elif kind == FIRST:
            pending = chunk; continue
        elif kind == MIDDLE:
            pending += chunk; continue
        elif kind == LAST:
            pending += chunk
        else:
            raise ValueError(f"{path}: record type {kind} at byte {pos}")
        record = wandb_internal_pb2.Record()
        record.ParseFromString(pending)
        yield record
