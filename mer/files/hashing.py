"""A file's sha256, read in chunks: how shards, tokenizer files and checkpoints are identified."""

from __future__ import annotations

import hashlib
from pathlib import Path

CHUNK_BYTES = 16 << 20  # a multiple of every token dtype's size (shards are hashed and scanned per chunk)


def file_sha256(path: Path) -> str:
    """The sha256 of a file's bytes, read in chunks (hashlib releases the GIL on large buffers)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()
