"""The text source of one task, built from its config: the one place that knows every source by name."""

from __future__ import annotations

from pathlib import Path

from mer.data.config import TaskConfig
from mer.data.corpus import DataError, TaskCorpus
from mer.data.identity import IdentityBook


def build_corpus(task: TaskConfig, data_dir: Path, identity: IdentityBook | None = None) -> TaskCorpus:
    """The text source of one task (not used for pre-tokenized tasks). `identity` records the content hashes of
    the user's input files (`mer.data.identity`); without it they are hashed (a plan's look at the cache)."""
    if task.source == "bible":
        from mer.data.sources.bible import build_bible_corpus

        return build_bible_corpus(task.name, task.language, task.translation, task.max_train_documents)
    if task.source == "files":
        from mer.data.sources.files import build_files_corpus

        return build_files_corpus(
            task.name, task.language, task.train_files, task.val_files, task.val_fraction, task.text_field,
            task.text_split, task.encoding, task.decode_errors, task.max_train_documents, identity,
        )
    if task.source == "hf":
        from mer.data.sources.hf import build_hf_corpus

        return build_hf_corpus(task, identity)
    if task.source == "debian":
        from mer.data.sources.debian import DebianDocsConfig, build_debian_corpus

        # The task's own package list, if any: the corpus fingerprint hashes the packages read (with their versions),
        # so the tokenizer and shards made from other packages are never reused; unset, the defaults as before.
        cfg = DebianDocsConfig(languages=[task.language], cache_dir=str(data_dir / "debian"),
                               packages={task.language: list(task.packages)} if task.packages else {},
                               max_packages=task.max_packages)
        return build_debian_corpus(task.language, cfg, task.name)
    raise DataError(f"task {task.name!r}: source {task.source!r} has no text to build a corpus from")
