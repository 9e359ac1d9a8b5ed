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


# Files of a model directory that are not the tokenizer: a model's folder is also its tokenizer's
# (model.init_from), and hashing gigabytes of weights to name a token cache would be slow and pointless.
NOT_TOKENIZER_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf", ".h5", ".msgpack", ".ckpt", ".onnx")
NOT_TOKENIZER_NAMES = ("config.json", "generation_config.json", "model.safetensors.index.json",
                       "pytorch_model.bin.index.json")


def tokenizer_files(directory: Path) -> list[Path]:
    """The files of a tokenizer's folder (which may be a whole model's: weights and model configs left out), sorted."""
    return sorted(p for p in directory.iterdir()
                  if p.is_file() and p.suffix not in NOT_TOKENIZER_SUFFIXES and p.name not in NOT_TOKENIZER_NAMES)


def tokenizer_files_hash(directory: Path) -> str:
    """16 hex digits of the sha256 of the names and bytes of `tokenizer_files(directory)`: a user tokenizer's
    hash (data.tokenizer.path), and the check of the copy a run directory keeps (mer.hf.run_files)."""
    digest = hashlib.sha256()
    for path in tokenizer_files(directory):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]
