"""A group of pieces prepared in a job (a worker process or a Slurm array task): `build_group` rebuilds the tasks'
corpora and loads the tokenizer from its folder, so a job needs only the data config; it builds the pieces not done
yet and, if asked, finishes every task whose pieces are then all done (`mer.data.shard_build`).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from mer.data.atomic import remove_stale_staging
from mer.data.config import DataConfig
from mer.data.corpus import Piece, TaskCorpus
from mer.data.corpus_build import build_corpus
from mer.data.identity import IdentityBook
from mer.data.shard_build import build_piece, finish_task, pieces_directory, task_pieces
from mer.data.shards import shard_directory, token_dtype


@dataclass
class TaskWork:
    """One task still to prepare: its corpus, pieces and folders."""

    corpus: TaskCorpus
    pieces: list[Piece]
    final: Path
    work: Path
    coverage: dict


@dataclass(frozen=True)
class GroupSpec:
    """What a job needs to rebuild everything it works on (picklable: configs, paths and names only)."""

    data: DataConfig
    tokenizer_dir: str
    tokenizer_hash: str
    piece_bytes: int


def plan_work(corpora: dict[str, TaskCorpus], coverage: dict[str, dict], tokenizer_hash: str, data_dir: Path,
              piece_bytes: int) -> dict[str, TaskWork]:
    """The tasks whose shards are not prepared yet, with their pieces."""
    todo = {}
    for name, corpus in corpora.items():
        final = shard_directory(data_dir, tokenizer_hash, corpus)
        remove_stale_staging(final)  # a staging folder an older, killed preparation left beside the entry
        if final.is_dir():
            continue
        pieces = task_pieces(corpus, piece_bytes)
        todo[name] = TaskWork(corpus, pieces, final, pieces_directory(final, pieces), coverage[name])
    return todo


_loaded: dict[tuple, object] = {}
"""A worker's tokenizer and corpora, loaded once per process (a pool's worker gets one piece at a time)."""


def load_tokenizer(directory: str):
    if ("tokenizer", directory) not in _loaded:
        from transformers import AutoTokenizer

        _loaded[("tokenizer", directory)] = AutoTokenizer.from_pretrained(directory, local_files_only=True)
    return _loaded[("tokenizer", directory)]


def load_corpus(data: DataConfig, name: str) -> TaskCorpus:
    task = next(task for task in data.tasks if task.name == name)
    key = ("corpus", data.data_dir, repr(task))
    if key not in _loaded:
        # Through the data cache's identity records: the launching process hashed the input files and stamped them,
        # so a worker or array task only stats them (without the book every worker hashed the whole corpus again).
        data_dir = Path(data.data_dir).expanduser()
        _loaded[key] = build_corpus(task, data_dir, IdentityBook.of(data_dir))
    return _loaded[key]


def build_group(spec: GroupSpec, items: list[tuple[str, int]], finish: bool) -> Counter:
    """Build the given pieces (those not done and not busy), in a job; `finish`: then publish every task of the
    group whose pieces are all done. Returns how many pieces were built, found done or found busy."""
    from mer.data.tokenizer import check_coverage

    tokenizer = load_tokenizer(spec.tokenizer_dir)
    dtype = token_dtype(len(tokenizer))
    data_dir = Path(spec.data.data_dir).expanduser()
    works: dict[str, TaskWork | None] = {}
    counts: Counter = Counter()
    for name, index in items:
        if name not in works:  # None: the task was published already
            corpus = load_corpus(spec.data, name)
            works[name] = plan_work({name: corpus}, {name: {}}, spec.tokenizer_hash, data_dir,
                                    spec.piece_bytes).get(name)
        work = works[name]
        counts["done" if work is None else build_piece(work.final, work.work, index, work.pieces, tokenizer,
                                                       dtype)] += 1
    if finish:
        for work in works.values():
            if work is not None:
                finish_task(work.final, work.work, work.corpus, work.pieces, tokenizer, spec.tokenizer_hash, dtype,
                            check_coverage(tokenizer, work.corpus))
    return counts
