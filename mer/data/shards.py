"""Token shards: one flat token array per task and split on disk, with a manifest.

Layout under `<data_dir>/shards/<tokenizer hash>/<task>-<fingerprint[:12]>/`:
`train.bin`, `val.bin` (raw little-endian uint16 when the vocabulary fits, else uint32; documents
separated by the end-of-text token) and `manifest.json` (source, hashes, token counts, dtype).
Shards are read with `numpy.memmap`, never loaded whole.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import chain
from pathlib import Path

import numpy as np

from mer.data.atomic import atomic_directory
from mer.data.concat_tokens import ConcatenatedTokens
from mer.data.corpus import DataError, TaskCorpus
from mer.data.shard_check import rebuild_hint, verify_shard_files

SHARD_FORMAT = 1
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

    def paths(self, split: str) -> list[Path]:
        """The split's token files in order: our one shard, or a `tokens` task's files (`mer.data.token_files`)."""
        if "files" not in self.manifest:
            return [self.directory / f"{split}.bin"]
        files = self.manifest["files"][split]
        return [Path(f) for f in ([files] if isinstance(files, str) else files)]

    def path(self, split: str) -> Path:
        """The split's one token file (a `tokens` task of several files has no one file: use `paths`)."""
        paths = self.paths(split)
        if len(paths) != 1:
            raise ValueError(f"task {self.name!r}: the {split} split is {len(paths)} files; use paths()")
        return paths[0]

    def n_tokens(self, split: str) -> int:
        return int(self.manifest["splits"][split]["tokens"])

    def tokens(self, split: str) -> np.memmap | ConcatenatedTokens:
        paths = self.paths(split)
        if len(paths) == 1:
            return np.memmap(paths[0], dtype=self.dtype, mode="r")
        return ConcatenatedTokens(paths, self.dtype)  # a `tokens` task's files end to end


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


def write_split(documents: Iterable[str], tokenizer, path: Path, dtype: np.dtype) -> dict:
    """Tokenize documents into a flat array file (EOS after each document); returns counts and hash."""
    eos = tokenizer.eos_token_id
    digest = hashlib.sha256()
    n_tokens = n_documents = n_chars = 0
    largest = -1
    with open(path, "wb") as handle:
        for batch in _batches(documents, 256):
            # The Rust tokenizer encodes a batch on all cores.
            # verbose=False: documents are meant to be longer than the tokenizer's model_max_length (they are cut
            # into blocks later); transformers would warn "Token indices sequence length is longer..." at every run.
            encoded = tokenizer([piece for piece, _ in batch], add_special_tokens=False, verbose=False)["input_ids"]
            ends = [ends_document for _, ends_document in batch]
            flat = np.fromiter(
                chain.from_iterable(ids + [eos] if last else ids for ids, last in zip(encoded, ends, strict=True)),
                dtype=np.int64,
                count=sum(len(ids) + last for ids, last in zip(encoded, ends, strict=True)),
            )
            if flat.size and flat.max() >= np.iinfo(dtype).max + 1:
                raise DataError(f"token id {int(flat.max())} does not fit {dtype}; this is a bug in dtype selection")
            largest = max(largest, int(flat.max())) if flat.size else largest
            chunk = flat.astype(dtype).tobytes()
            handle.write(chunk)
            digest.update(chunk)
            n_tokens += flat.size
            n_documents += sum(ends)
            n_chars += sum(len(piece) for piece, _ in batch)
    return {"tokens": n_tokens, "documents": n_documents, "characters": n_chars, "sha256": digest.hexdigest(),
            "max_token_id": largest}


def shard_directory(data_dir: Path, tokenizer_hash: str, corpus: TaskCorpus) -> Path:
    return data_dir / "shards" / tokenizer_hash / f"{corpus.name}-{corpus.fingerprint[:12]}"


def prepare_shards(
    corpus: TaskCorpus, tokenizer, tokenizer_hash: str, data_dir: Path, coverage: dict[str, float]
) -> ShardInfo:
    """Tokenize one task into train/val shards, once; later calls return the cached shards."""
    final = shard_directory(data_dir, tokenizer_hash, corpus)
    with atomic_directory(final) as staging:
        if staging is not None:
            started = time.perf_counter()
            dtype = token_dtype(len(tokenizer))
            splits = {}
            for split, documents in (("train", corpus.train_documents()), ("val", corpus.val_documents())):
                splits[split] = write_split(documents, tokenizer, staging / f"{split}.bin", dtype)
                if splits[split]["max_token_id"] >= len(tokenizer):  # checked here, recorded, checked at every start
                    raise DataError(f"task {corpus.name!r}: the tokenizer produced id {splits[split]['max_token_id']} "
                                    f"but has {len(tokenizer)} tokens: its files are inconsistent (a damaged "
                                    "tokenizer.json?); give an intact tokenizer")
                if splits[split]["tokens"] == 0:
                    raise DataError(f"task {corpus.name!r}: the {split} split is empty ({corpus.description}); "
                                    "give more text or fix the paths")
            manifest = {
                "format": SHARD_FORMAT,
                "task": corpus.name,
                "language": corpus.language,
                "source": corpus.description,
                "fingerprint": corpus.fingerprint,
                "tokenizer_hash": tokenizer_hash,
                "vocab_size": len(tokenizer),
                "eos_token_id": tokenizer.eos_token_id,
                "dtype": dtype.name,
                "document_separator": "eos_token_id after every document",
                "splits": splits,
                "coverage": coverage,
                "seconds": round(time.perf_counter() - started, 3),
            }
            # The manifest is written last, inside the staging directory, so it exists only for complete shards.
            (staging / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False))
    return load_shards(final)


def load_shards(directory: Path) -> ShardInfo:
    """Open a prepared shard directory, checking the files match the manifest: sizes, sha256 and token ids
    (`mer.data.shard_check`, which reads a file again only when it changed since it was last verified)."""
    manifest_path = directory / "manifest.json"
    if not manifest_path.is_file():
        # A folder appears under its final name only once complete (mer.data.atomic): this one lost its manifest.
        raise DataError(f"{directory} has no manifest.json, so its shards cannot be checked; "
                        f"{rebuild_hint(directory, None)}")
    try:
        manifest = json.loads(manifest_path.read_text())
    except json.JSONDecodeError as error:
        raise DataError(f"{manifest_path} is corrupt ({error.msg}); {rebuild_hint(directory, None)}") from None
    info = ShardInfo(name=manifest["task"], directory=directory, manifest=manifest)
    for split in SPLITS:
        path = info.path(split)
        expected = info.n_tokens(split) * info.dtype.itemsize
        if not path.is_file() or path.stat().st_size != expected:
            raise DataError(f"{path} is missing or has the wrong size (expected {expected} bytes); "
                            f"{rebuild_hint(directory, manifest)}")
    verify_shard_files(directory, manifest, {split: info.path(split) for split in SPLITS}, info.dtype)
    return info
