"""Sharded, resumable preparation of one task: its input cut into pieces, each tokenized on its own into its own
token shards, the manifest written once every piece is done.

Where things are while a task is prepared (beside its final folder `<task>-<fingerprint[:12]>/`):
`.<task>-<fingerprint[:12]>.pieces-<plan>/` holds the finished pieces: `train-NNNNN.bin` and `val-NNNNN.bin`
(`train.bin` and `val.bin` for a task of one piece; written under a temporary name and renamed, `mer.files.atomic`) and `piece-NNNNN.json`, the record that says the
piece is complete (written last, also atomically). `<plan>` is a hash of the pieces' keys, so preparations that cut
the input differently never mix their pieces. A piece is built by one process at a time (a lock file per piece,
`.piece-NNNNN.lock`, taken without waiting: a busy piece is left to its owner, so two preparations of the same data
share the work instead of doing it twice). A process killed in the middle of a piece leaves only a temporary file;
the next preparation builds that piece again and keeps every finished one.

Whoever finds every piece done writes `manifest.json` (the shards in piece order, their token counts and sha256)
into the folder and renames it to the final name, under the task's lock: the final folder exists only complete.
Nothing in it depends on the number of workers or the order they finished in (no timings, no host names): the
folders prepared by 1, 2 or 3 workers are byte-identical (tested).
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path

import numpy as np
from filelock import FileLock, Timeout

from mer.data.corpus import DataError, Piece, TaskCorpus, whole_corpus_pieces
from mer.data.shards import SHARD_FORMAT, SPLITS, SplitWriter
from mer.files.atomic import atomic_path, publish_directory, write_text
from mer.files.fault_points import fault_point

log = logging.getLogger(__name__)

PIECE_BYTES = 256 << 20
"""Default size of a piece of a large text or JSONL file (a file up to this size is one piece): small enough that
a 400 GB corpus gives about 1,600 pieces to spread over workers, large enough that a piece's shard is not tiny."""
LOCK_TIMEOUT_S = 6 * 3600.0


def task_pieces(corpus: TaskCorpus, piece_bytes: int = PIECE_BYTES) -> list[Piece]:
    """The pieces of a task: its source's cut (`TaskCorpus.pieces`), or the whole corpus as one piece."""
    return corpus.pieces(piece_bytes) if corpus.pieces is not None else whole_corpus_pieces(corpus)


def pieces_directory(final: Path, pieces: list[Piece]) -> Path:
    """The folder of a task's finished pieces, named after the plan (the pieces' keys)."""
    plan = hashlib.sha256("\n".join(piece.key for piece in pieces).encode()).hexdigest()[:12]
    return final.parent / f".{final.name}.pieces-{plan}"


def shard_name(split: str, index: int, n_pieces: int) -> str:
    """`train-00003.bin`; a task of one piece keeps the names of the format before pieces, `train.bin`."""
    return f"{split}.bin" if n_pieces == 1 else f"{split}-{index:05d}.bin"


def record_path(work: Path, index: int) -> Path:
    return work / f"piece-{index:05d}.json"


def task_lock(final: Path) -> FileLock:
    """The lock of a task's publication (`finish_task`), beside its final folder."""
    return FileLock(str(final) + ".lock", timeout=LOCK_TIMEOUT_S)


def piece_done(work: Path, index: int) -> bool:
    return record_path(work, index).is_file()


def build_piece(final: Path, work: Path, index: int, pieces: list[Piece], tokenizer, dtype: np.dtype,
                wait: bool = False) -> str:
    """Tokenize one piece into its shards unless it is done or another process is at it (without `wait`).
    Returns "built", "done" (nothing to do) or "busy" (another process holds it)."""
    if final.is_dir() or piece_done(work, index):
        return "done"
    # The task's lock, briefly, around each look: a process finishing the task (`finish_task`, under that lock)
    # removes the pieces' records before it renames the folder, and a look in between would take a finished piece
    # for a missing one and build it again.
    with task_lock(final):
        if final.is_dir():
            return "done"
        work.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(work / f".piece-{index:05d}.lock"))
    try:
        lock.acquire(timeout=LOCK_TIMEOUT_S if wait else 0)
    except Timeout:
        return "busy"
    except FileNotFoundError:  # the folder was just published (renamed) by the process that finished the task
        if final.is_dir():
            return "done"
        raise
    try:
        with task_lock(final):
            if final.is_dir() or piece_done(work, index):  # finished by another process meanwhile
                return "done"
        # Safe to build: this piece has no record and its lock is ours, so no one can finish the task meanwhile.
        _write_piece(work, index, pieces, tokenizer, dtype)
        return "built"
    finally:
        lock.release()


def _write_piece(work: Path, index: int, pieces: list[Piece], tokenizer, dtype: np.dtype) -> None:
    piece = pieces[index]
    names = {split: shard_name(split, index, len(pieces)) for split in SPLITS}
    with (atomic_path(work / names["train"]) as train_tmp, atomic_path(work / names["val"]) as val_tmp,
          open(train_tmp, "wb") as train_handle, open(val_tmp, "wb") as val_handle):
        writers = {"train": SplitWriter(tokenizer, train_handle, dtype),
                   "val": SplitWriter(tokenizer, val_handle, dtype)}
        for split, document in piece.read():
            writers[split].add(document)
        stats = {"train": writers["train"].close()}
        train_handle.flush()
        fault_point("prepare_piece")  # the train shard written under its temporary name, the piece not finished
        stats["val"] = writers["val"].close()
    splits = {}
    for split in SPLITS:
        if stats[split]["tokens"]:
            splits[split] = {"file": names[split], **stats[split]}
        else:  # nothing of this split in the piece: no empty file in the task's folder
            (work / names[split]).unlink(missing_ok=True)
            splits[split] = {"file": None, **stats[split]}
    # Written last: a piece is done only when its record exists, and then its shards are complete.
    write_text(record_path(work, index), json.dumps({"piece": piece.key, "index": index, "splits": splits},
                                                    indent=1, ensure_ascii=False))


def manifest_of(corpus: TaskCorpus, pieces: list[Piece], records: list[dict], tokenizer, tokenizer_hash: str,
                dtype: np.dtype, coverage: dict) -> dict:
    """The task's manifest from its pieces' records (in piece order), refusing an empty split or a token id out of
    the tokenizer's range."""
    splits = {}
    for split in SPLITS:
        parts = [record["splits"][split] for record in records]
        shards = [{"file": part["file"], "piece": record["piece"], "tokens": part["tokens"],
                   "documents": part["documents"], "characters": part["characters"], "sha256": part["sha256"],
                   "max_token_id": part["max_token_id"]}
                  for record, part in zip(records, parts, strict=True) if part["tokens"]]
        splits[split] = {"tokens": sum(p["tokens"] for p in parts), "documents": sum(p["documents"] for p in parts),
                         "characters": sum(p["characters"] for p in parts),
                         "max_token_id": max((p["max_token_id"] for p in parts), default=-1), "shards": shards}
        if splits[split]["max_token_id"] >= len(tokenizer):  # checked here, recorded, checked at every start
            raise DataError(f"task {corpus.name!r}: the tokenizer produced id {splits[split]['max_token_id']} "
                            f"but has {len(tokenizer)} tokens: its files are inconsistent (a damaged "
                            "tokenizer.json?); give an intact tokenizer")
        if splits[split]["tokens"] == 0:
            raise DataError(f"task {corpus.name!r}: the {split} split is empty ({corpus.description}); "
                            "give more text or fix the paths")
    return {
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
        "pieces": len(pieces),
        "splits": splits,
        "coverage": coverage,
    }


def finish_task(final: Path, work: Path, corpus: TaskCorpus, pieces: list[Piece], tokenizer, tokenizer_hash: str,
                dtype: np.dtype, coverage: dict) -> bool:
    """Publish the task's folder if every piece is done (True), under the task's lock; False while pieces are
    missing. Also True when another process published it first."""
    with task_lock(final):
        if not final.is_dir():
            if not all(piece_done(work, i) for i in range(len(pieces))):
                return False
            records = [json.loads(record_path(work, i).read_text()) for i in range(len(pieces))]
            manifest = manifest_of(corpus, pieces, records, tokenizer, tokenizer_hash, dtype, coverage)
            for leftover in work.iterdir():  # locks, records, temporary files of killed writers
                if leftover.name.startswith(".") or leftover.name.startswith("piece-"):
                    leftover.unlink(missing_ok=True)
            # The manifest is written last, inside the folder, so it exists only for complete shards.
            (work / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False))
            publish_directory(work, final)
        for stale in final.parent.glob(f".{final.name}.pieces-*"):  # other plans' pieces: of no use any more
            shutil.rmtree(stale, ignore_errors=True)
    return True

