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
from mer.data.corpus import DataError
from mer.data.corpus_build import build_corpus
from mer.data.identity import IdentityBook
from mer.data.piece_groups import GroupSpec, plan_work
from mer.data.prepare_config import PrepareConfig
from mer.data.prepare_engine import piece_report, run_engine, worker_pool
from mer.data.shards import ShardInfo, load_shards, shard_directory, token_dtype
from mer.data.token_files import register_token_files
from mer.data.tokenizer import check_coverage, check_tokenizer_path, prepare_tokenizer
from mer.files.atomic import DiskFull, is_disk_full

log = logging.getLogger(__name__)


def check_val_tokens(task: TaskConfig, shards: ShardInfo, minimum: int) -> None:
    """Refuse a task whose validation split is too small to evaluate on (`data.min_val_tokens`), naming the fixes its
    source offers. Its shards stay in the cache: they are complete and right, only too small for this run's minimum."""
    n_val = shards.n_tokens("val")
    if n_val >= minimum:
        return
    where = f"data.tasks[{task.name}]"
    fixes = {
        "files": ([f"give more text in {where}.val_files"] if task.val_files else
                  [f"raise {where}.val_fraction (now {task.val_fraction})", f"give {where}.val_files"]),
        "debian": [f"add packages ({where}.packages)"] + ([f"raise {where}.max_packages"] if task.max_packages else []),
        "tokens": [f"give a longer validation file ({where}.val_files)"],
        "hf": ([f"give a larger {where}.val_split"] if task.val_split else
               [f"raise {where}.val_fraction (now {task.val_fraction})", f"set {where}.val_split"]),
        "bible": [],  # the held-out books are fixed, the same in every language
    }[task.source]
    raise DataError(f"task {task.name!r}: its validation split has {n_val:,} tokens, fewer than "
                    f"data.min_val_tokens={minimum:,}, too few to evaluate on; "
                    f"{', '.join(fixes + ['or lower data.min_val_tokens' if fixes else 'lower data.min_val_tokens'])}")


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
    pieces: str = ""
    """Per task prepared now, how many pieces were built and how many kept from an earlier preparation."""


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


def prepare_data(cfg: DataConfig, engine: PrepareConfig | None = None, on_change: str = "rehash") -> PreparedData:
    """Prepare (or load from the cache) the tokenizer and every task's shards; `engine`: with how many processes
    or on Slurm (`python -m mer.data.prepare workers=4`; default: in this process).

    `on_change` says what an input file (a corpus or token file) whose content changed since it was prepared means:
    new data to prepare (`rehash`, `python -m mer.data.prepare`) or a refusal (`refuse`, a run start).
    Unchanged files are recognised by their stamps, not read (`mer.data.identity`)."""
    data_dir = Path(cfg.data_dir).expanduser()
    check_data_dir(data_dir)
    try:
        return _prepare(cfg, data_dir, engine or PrepareConfig(), IdentityBook.of(data_dir, on_change))
    except DiskFull:
        raise
    except OSError as error:
        if not is_disk_full(error):
            raise
        # Named here: the caller (a run) would otherwise report its own folder's device as the full one.
        raise DiskFull(f"no space left on the device of the data cache {data_dir} (data.data_dir) while preparing "
                       "the data; free space there and run the same command again", where=data_dir) from error


def _prepare(cfg: DataConfig, data_dir: Path, engine: PrepareConfig, identity: IdentityBook) -> PreparedData:
    started = time.perf_counter()
    text_tasks = [t for t in cfg.tasks if t.source != "tokens"]
    token_tasks = [t for t in cfg.tasks if t.source == "tokens"]
    if token_tasks and cfg.tokenizer.path is None:
        names = [t.name for t in token_tasks]
        raise DataError(f"tasks {names} are pre-tokenized: set data.tokenizer.path to the tokenizer they were made with")
    check_tokenizer_path(cfg.tokenizer)
    corpora = {t.name: build_corpus(t, data_dir, identity) for t in text_tasks}  # checks sources before any long work
    tokenizer, digest = prepare_tokenizer(list(corpora.values()), cfg.tokenizer, data_dir)
    tokenizer_dir = (Path(cfg.tokenizer.path).expanduser() if cfg.tokenizer.path is not None
                     else data_dir / "tokenizers" / digest)
    coverage = {name: check_coverage(tokenizer, corpus) for name, corpus in corpora.items()}
    todo = plan_work(corpora, coverage, digest, data_dir, engine.piece_bytes)
    spec = GroupSpec(cfg, str(tokenizer_dir), digest, engine.piece_bytes)
    # Each task's validation split is checked as soon as the task is done, before the next one is finished: in this
    # process before the next is tokenized; with workers, while they go on with the next tasks' pieces (a refusal
    # cancels those not started); a Slurm array takes every task at once and the checks follow it.
    counts = run_engine(todo, spec, engine, tokenizer) if engine.launcher == "slurm" else {}
    shards = []
    with worker_pool(engine, todo, spec) as futures:
        for task in cfg.tasks:
            if task.source == "tokens":
                dtype = task.token_dtype or token_dtype(len(tokenizer)).name
                shards.append(register_token_files(task.name, task.language, task.train_files, task.val_files, dtype,
                                                   tokenizer, digest, data_dir, identity))
            else:
                if task.name in todo and task.name not in counts:
                    counts.update(run_engine({task.name: todo[task.name]}, spec, engine, tokenizer, futures))
                shards.append(load_shards(shard_directory(data_dir, digest, corpora[task.name])))
            check_val_tokens(task, shards[-1], cfg.min_val_tokens)
    # The downstream cloze items of the held-out verses: written once, like the shards, so that
    # `python -m mer.downstream --tasks bible_cloze` needs no network (and no preparation of its own).
    cloze = prepare_cloze(text_tasks, {name: corpus.fingerprint for name, corpus in corpora.items()}, data_dir)
    return PreparedData(tokenizer, digest, shards, time.perf_counter() - started, tokenizer_dir, cloze,
                        piece_report(counts))


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
