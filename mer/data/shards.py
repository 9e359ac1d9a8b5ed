"""Token shards: flat token arrays per task and split on disk, with a manifest.

Layout under `<data_dir>/shards/<tokenizer hash>/<task>-<fingerprint[:12]>/`: one `train-NNNNN.bin` and
`val-NNNNN.bin` per input piece that produced tokens of that split, or `train.bin` and `val.bin` for a task of one
piece (written by `mer.data.shard_build`: raw little-endian uint16 when the vocabulary fits, else uint32; documents
separated by the end-of-text token) and `manifest.json`
(source, hashes, token counts, dtype, and per split the list of its shards in piece order). A split's tokens are
its shards one after the other (`mer.data.token_view`), read with `numpy.memmap`, never loaded whole.
Format 1 (one `train.bin` and `val.bin` per task, no list of shards, written before sharded preparation) is still
read.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import chain
from pathlib import Path

import numpy as np

from mer.data.corpus import DataError, TaskCorpus
from mer.data.shard_check import rebuild_hint, verify_shard_files
from mer.data.token_view import ConcatenatedTokens

SHARD_FORMAT = 2
SPLITS = ("train", "val")


def token_dtype(vocab_size: int) -> np.dtype:
    """uint16 when every token id fits, else uint32."""
    return np.dtype(np.uint16) if vocab_size <= 2**16 else np.dtype(np.uint32)


@dataclass(frozen=True)
class ShardInfo:
    """A prepared task: where its shards are and what the manifest says."""

    name: str
    directory: Path
    manifest: dict

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.manifest["dtype"])

    def shards(self, split: str) -> list[dict]:
        """The split's shard files in order, each {"path": Path, "tokens": int, "sha256": str | None}."""
        entry = self.manifest["splits"][split]
        if "shards" not in entry:  # format 1: one file per split
            path = Path(self.manifest["files"][split]) if "files" in self.manifest else self.directory / f"{split}.bin"
            return [{"path": path, "tokens": int(entry["tokens"]), "sha256": entry.get("sha256")}]
        # A shard file is named relative to the folder, or absolute (the user's token files, registered in place).
        return [{"path": self.directory / shard["file"], "tokens": int(shard["tokens"]), "sha256": shard.get("sha256")}
                for shard in entry["shards"]]

    def paths(self, split: str) -> list[Path]:
        return [shard["path"] for shard in self.shards(split)]

    def path(self, split: str) -> Path:
        """The split's one shard file; a split in several shards has `paths(split)` instead."""
        paths = self.paths(split)
        if len(paths) != 1:
            raise ValueError(f"task {self.name!r}: the {split} split is {len(paths)} shard files; use paths()")
        return paths[0]

    def n_tokens(self, split: str) -> int:
        return int(self.manifest["splits"][split]["tokens"])

    def tokens(self, split: str):
        """The split's tokens: the memmap of its one shard, or a view of its shards one after the other."""
        parts = [np.memmap(path, dtype=self.dtype, mode="r") for path in self.paths(split)]
        return parts[0] if len(parts) == 1 else ConcatenatedTokens(parts)


PIECE_CHARS = 1 << 20
"""Longest text handed to the tokenizer at once: a longer document is encoded in pieces of at most this many
characters, cut before a space or line break, so that memory stays bounded whatever one document's length (a
52 MB JSONL line took 8 GB in one call). Byte-level BPE never merges across a space it splits before, so the
tokens are those of the whole document but at the rare cut inside a run of spaces."""
BATCH_CHARS = 8 << 20
"""Characters encoded per tokenizer call (and held as token lists at once), besides at most 256 pieces."""


def document_pieces(document: str, limit: int = PIECE_CHARS) -> Iterator[str]:
    """`document` in consecutive pieces of at most `limit` characters, each cut before the last space or line break
    of its second half (at `limit` itself where there is none); they join back to the document."""
    start = 0
    while len(document) - start > limit:
        end = start + limit
        cut = max(document.rfind(" ", start + limit // 2, end), document.rfind("\n", start + limit // 2, end))
        cut = cut if cut > start else end
        yield document[start:cut]
        start = cut
    yield document[start:]


def _batches(documents: Iterable[str], size: int) -> Iterator[list[tuple[str, bool]]]:
    """Batches of (piece, whether it ends its document), of at most `size` pieces and about BATCH_CHARS chars."""
    batch: list[tuple[str, bool]] = []
    chars = 0
    for document in documents:
        pieces = document_pieces(document)
        piece = next(pieces)
        for following in chain(pieces, [None]):
            batch.append((piece, following is None))
            chars += len(piece)
            if len(batch) == size or chars >= BATCH_CHARS:
                yield batch
                batch, chars = [], 0
            piece = following
    if batch:
        yield batch


class SplitWriter:
    """Tokenizes documents given one at a time into a flat array file (EOS after each document), in batches of
    at most 256 pieces and about BATCH_CHARS characters, so memory stays bounded whatever the corpus size."""

    def __init__(self, tokenizer, handle, dtype: np.dtype, batch_size: int = 256) -> None:
        self.tokenizer, self.handle, self.dtype, self.batch_size = tokenizer, handle, np.dtype(dtype), batch_size
        self.digest = hashlib.sha256()
        self.n_tokens = self.n_documents = self.n_chars = 0
        self.largest = -1
        self.batch: list[tuple[str, bool]] = []
        self.batch_chars = 0

    def add(self, document: str) -> None:
        pieces = document_pieces(document)
        piece = next(pieces)
        for following in chain(pieces, [None]):
            self.batch.append((piece, following is None))
            self.batch_chars += len(piece)
            if len(self.batch) == self.batch_size or self.batch_chars >= BATCH_CHARS:
                self.flush()
            piece = following

    def flush(self) -> None:
        if not self.batch:
            return
        batch, self.batch, self.batch_chars = self.batch, [], 0
        eos = self.tokenizer.eos_token_id
        # The Rust tokenizer encodes a batch on all cores.
        # verbose=False: documents are meant to be longer than the tokenizer's model_max_length (they are cut
        # into blocks later); transformers would warn "Token indices sequence length is longer..." at every run.
        encoded = self.tokenizer([piece for piece, _ in batch], add_special_tokens=False, verbose=False)["input_ids"]
        ends = [ends_document for _, ends_document in batch]
        flat = np.fromiter(
            chain.from_iterable(ids + [eos] if last else ids for ids, last in zip(encoded, ends, strict=True)),
            dtype=np.int64,
            count=sum(len(ids) + last for ids, last in zip(encoded, ends, strict=True)),
        )
        if flat.size and flat.max() >= np.iinfo(self.dtype).max + 1:
            raise DataError(f"token id {int(flat.max())} does not fit {self.dtype}; this is a bug in dtype selection")
        self.largest = max(self.largest, int(flat.max())) if flat.size else self.largest
        chunk = flat.astype(self.dtype).tobytes()
        self.handle.write(chunk)
        self.digest.update(chunk)
        self.n_tokens += flat.size
        self.n_documents += sum(ends)
        self.n_chars += sum(len(piece) for piece, _ in batch)

    def close(self) -> dict:
        """Flush the last batch; the counts and hash of what was written."""
        self.flush()
        return {"tokens": self.n_tokens, "documents": self.n_documents, "characters": self.n_chars,
                "sha256": self.digest.hexdigest(), "max_token_id": self.largest}


def write_split(documents: Iterable[str], tokenizer, path: Path, dtype: np.dtype) -> dict:
    """Tokenize documents into a flat array file (EOS after each document); returns counts and hash."""
    with open(path, "wb") as handle:
        writer = SplitWriter(tokenizer, handle, dtype)
        for document in documents:
            writer.add(document)
        return writer.close()


def shard_directory(data_dir: Path, tokenizer_hash: str, corpus: TaskCorpus) -> Path:
    return data_dir / "shards" / tokenizer_hash / f"{corpus.name}-{corpus.fingerprint[:12]}"


def load_shards(directory: Path) -> ShardInfo:
    """Open a prepared shard directory, checking the files match the manifest: sizes, sha256 and token ids
    (`mer.data.shard_check`, which reads a file again only when it changed since it was last verified)."""
    manifest_path = directory / "manifest.json"
    if not manifest_path.is_file():
        # A folder appears under its final name only once complete (mer.data.shard_build): this one lost its manifest.
        raise DataError(f"{directory} has no manifest.json, so its shards cannot be checked; "
                        f"{rebuild_hint(directory, None)}")
    try:
        manifest = json.loads(manifest_path.read_text())
    except json.JSONDecodeError as error:
        raise DataError(f"{manifest_path} is corrupt ({error.msg}); {rebuild_hint(directory, None)}") from None
    info = ShardInfo(name=manifest["task"], directory=directory, manifest=manifest)
    entries = {}
    for split in SPLITS:
        for shard in info.shards(split):
            path, expected = shard["path"], shard["tokens"] * info.dtype.itemsize
            if not path.is_file() or path.stat().st_size != expected:
                raise DataError(f"{path} is missing or has the wrong size (expected {expected} bytes); "
                                f"{rebuild_hint(directory, manifest)}")
            entries[f"{split}/{path.name}" if len(info.shards(split)) > 1 else split] = (path, shard["sha256"])
    verify_shard_files(directory, manifest, entries, info.dtype)
    return info
