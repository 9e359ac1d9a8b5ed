"""Task sequence -> corpora -> tokenizer -> token shards, cached and done once.

Order matters for bad input: every task's source is resolved and checked (files exist, packages
installed, languages known) before the tokenizer is trained or anything is tokenized.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

from mer.data.cloze import count_items, prepare_cloze
from mer.data.config import DataConfig, TaskConfig
from mer.data.corpus import DataError, TaskCorpus
from mer.data.identity import IdentityBook
from mer.data.shards import ShardInfo, prepare_shards, token_dtype
from mer.data.token_files import register_token_files
from mer.data.tokenizer import check_coverage, prepare_tokenizer
from mer.files.atomic import DiskFull, is_disk_full

log = logging.getLogger(__name__)


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

        return build_debian_corpus(task.language, DebianDocsConfig(languages=[task.language],
                                                                   cache_dir=str(data_dir / "debian")), task.name)
    raise DataError(f"task {task.name!r}: source {task.source!r} has no text to build a corpus from")


@dataclass
class PreparedData:
    """What preparation produced: the tokenizer, its hash and one shard set per task, in order."""

    tokenizer: object
    tokenizer_hash: str
    shards: list[ShardInfo]
    seconds: float
    tokenizer_dir: Path | None = None
    """The folder the tokenizer loads from (the cached BPE or data.tokenizer.path): exports copy it."""
    cloze_dir: Path | None = None
    """The harness task folder of the built-in `bible_cloze` task (`mer.data.cloze`); None without Bible tasks."""


def check_data_dir(data_dir: Path) -> None:
    """The data cache must be a folder this process can write (it takes a lock file there even when everything is
    cached): refused naming it otherwise, before any work. Its default comes from $MER_DATA_DIR."""
    fix = "set data.data_dir (or MER_DATA_DIR) to a folder this process can write"
    if data_dir.exists() and not data_dir.is_dir():
        raise DataError(f"data.data_dir={data_dir} is not a folder; {fix}")
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise DataError(f"data.data_dir={data_dir} cannot be created ({error.strerror}: {error.filename}); "
                        f"{fix}") from None
    if not os.access(data_dir, os.W_OK | os.X_OK):
        raise DataError(f"data.data_dir={data_dir} is not writable by this process; {fix}")


def prepare_data(cfg: DataConfig, on_change: str = "rehash") -> PreparedData:
    """Prepare (or load from the cache) the tokenizer and every task's shards.

    `on_change` says what an input file (a corpus or token file) whose content changed since it was prepared means:
    new data to prepare (`rehash`, `python -m mer.data.prepare`) or a refusal (`refuse`, a run start).
    Unchanged files are recognised by their stamps, not read (`mer.data.identity`)."""
    data_dir = Path(cfg.data_dir).expanduser()
    check_data_dir(data_dir)
    try:
        return _prepare(cfg, data_dir, IdentityBook.of(data_dir, on_change))
    except DiskFull:
        raise
    except OSError as error:
        if not is_disk_full(error):
            raise
        # Named here: the caller (a run) would otherwise report its own folder's device as the full one.
        raise DiskFull(f"no space left on the device of the data cache {data_dir} (data.data_dir) while preparing "
                       "the data; free space there and run the same command again", where=data_dir) from error


def _prepare(cfg: DataConfig, data_dir: Path, identity: IdentityBook) -> PreparedData:
    started = time.perf_counter()
    text_tasks = [t for t in cfg.tasks if t.source != "tokens"]
    token_tasks = [t for t in cfg.tasks if t.source == "tokens"]
    if token_tasks and cfg.tokenizer.path is None:
        names = [t.name for t in token_tasks]
        raise DataError(f"tasks {names} are pre-tokenized: set data.tokenizer.path to the tokenizer they were made with")
    corpora = {t.name: build_corpus(t, data_dir, identity) for t in text_tasks}  # checks sources before any long work
    tokenizer, digest = prepare_tokenizer(list(corpora.values()), cfg.tokenizer, data_dir)
    shards = []
    for task in cfg.tasks:
        if task.source == "tokens":
            dtype = task.token_dtype or token_dtype(len(tokenizer)).name
            shards.append(register_token_files(task.name, task.language, task.train_files, task.val_files, dtype,
                                               tokenizer, digest, data_dir, identity))
            continue
        corpus = corpora[task.name]
        coverage = check_coverage(tokenizer, corpus)
        shards.append(prepare_shards(corpus, tokenizer, digest, data_dir, coverage))
    tokenizer_dir = (Path(cfg.tokenizer.path).expanduser() if cfg.tokenizer.path is not None
                     else data_dir / "tokenizers" / digest)
    # The downstream cloze items of the held-out verses: written once, like the shards, so that
    # `python -m mer.downstream --tasks bible_cloze` needs no network (and no preparation of its own).
    cloze = prepare_cloze(text_tasks, {name: corpus.fingerprint for name, corpus in corpora.items()}, data_dir)
    return PreparedData(tokenizer, digest, shards, time.perf_counter() - started, tokenizer_dir, cloze)


def prepare_cloze_tasks(cfg: DataConfig) -> Path | None:
    """The built-in cloze task folder of a task sequence (written now if preparation has not written it yet);
    None when no task is on the Bible source. For scoring a finished run's models without preparing it again."""
    data_dir = Path(cfg.data_dir).expanduser()
    bible = [t for t in cfg.tasks if t.source == "bible"]
    return prepare_cloze(bible, {t.name: build_corpus(t, data_dir).fingerprint for t in bible}, data_dir)


def format_table(prepared: PreparedData) -> str:
    """Tokens per task and split, as a small plain-text table."""
    header = f"{'task':<8} {'language':<9} {'train tokens':>14} {'val tokens':>12} {'bytes/token':>12}  source"
    lines = [header, "-" * len(header)]
    for info in prepared.shards:
        m = info.manifest
        bpt = m.get("coverage", {}).get("bytes_per_token", float("nan"))
        lines.append(f"{info.name:<8} {m['language']:<9} {info.n_tokens('train'):>14,} {info.n_tokens('val'):>12,} "
                     f"{bpt:>12.2f}  {m['source']}")
    lines.append(f"tokenizer {prepared.tokenizer_hash} ({len(prepared.tokenizer)} tokens); "
                 f"shards under {prepared.shards[0].directory.parent}")
    if prepared.cloze_dir is not None:
        counts = ", ".join(f"{name} {n}" for name, n in count_items(prepared.cloze_dir).items())
        lines.append(f"downstream task bible_cloze (4 choices, chance 0.25): {counts} items; harness task folder "
                     f"{prepared.cloze_dir} (lm_eval --include_path)")
    return "\n".join(lines)
