"""Who tokenizes the pieces of a preparation: this process, `workers` processes of this machine
(`concurrent.futures.ProcessPoolExecutor`), or a Slurm job array through submitit (`mer.data.prepare_slurm`).

Every engine runs the same function on a group of (task, piece) pairs, `mer.data.piece_groups.build_group`. The
launching process then
builds, waiting for their locks, whatever is still missing (a piece another preparation was at, or one of a worker
that died) and finishes the tasks itself: the result does not depend on the engine or on which worker did what.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from multiprocessing import get_context

from mer.data.corpus import DataError
from mer.data.piece_groups import GroupSpec, TaskWork, build_group
from mer.data.prepare_config import PrepareConfig
from mer.data.shard_build import build_piece, finish_task, piece_done
from mer.data.shards import token_dtype

log = logging.getLogger(__name__)


def _build_in_worker(spec: GroupSpec, item: tuple[str, int]) -> Counter:
    return build_group(spec, [item], finish=False)


def _worker_init() -> None:
    # One worker is one core's worth of work: the tokenizer's own threads would make N workers fight for the cores.
    os.environ["TOKENIZERS_PARALLELISM"] = "false"


def groups_of(todo: dict[str, TaskWork], n_groups: int) -> list[list[tuple[str, int]]]:
    """The missing pieces of every task dealt round-robin into at most `n_groups` non-empty groups."""
    missing = [(name, i) for name, work in todo.items() for i in range(len(work.pieces))
               if not piece_done(work.work, i)]
    groups = [missing[g::n_groups] for g in range(n_groups)]
    return [group for group in groups if group]


@contextmanager
def worker_pool(engine: PrepareConfig, todo: dict[str, TaskWork], spec: GroupSpec) -> Iterator[dict[str, list]]:
    """The `workers` processes of a preparation, started once for the whole command (a worker's start, its imports
    and the tokenizer's load, costs seconds), with every missing piece of every task submitted at once, in the
    sequence's order: no worker idles at the end of one task while the next has pieces. Yields the futures by task
    ({} when the pieces are built in this process or on Slurm). Leaving on an error (a task refused) cancels the
    pieces no worker has started yet: at most `workers` pieces of later tasks were begun for nothing."""
    if engine.launcher != "local" or engine.workers <= 1 or not todo:
        yield {}
        return
    pool = ProcessPoolExecutor(engine.workers, mp_context=get_context("spawn"), initializer=_worker_init)
    try:
        futures: dict[str, list] = {name: [] for name in todo}
        for group in groups_of(todo, 1):
            for name, index in group:
                futures[name].append(pool.submit(_build_in_worker, spec, (name, index)))
        yield futures
    except BaseException:
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)


def run_engine(todo: dict[str, TaskWork], spec: GroupSpec, engine: PrepareConfig, tokenizer,
               futures: dict[str, list] | None = None) -> dict[str, Counter]:
    """Prepare every task of `todo` with the chosen engine (`futures`: their pieces already given to the workers,
    from `worker_pool`), then finish them here. Returns, per task, how many pieces this preparation built and how
    many it found done (kept from an earlier or concurrent one)."""
    dtype = token_dtype(len(tokenizer))
    counts = {name: Counter() for name in todo}
    for name, work in todo.items():
        counts[name]["done"] += sum(piece_done(work.work, i) for i in range(len(work.pieces)))
    if engine.launcher == "slurm":
        from mer.data.prepare_slurm import run_array

        run_array(spec, groups_of(todo, engine.slurm.array_tasks), engine.slurm)
    elif futures:
        try:
            for name in todo:
                for future in futures.get(name, []):
                    counts[name]["built"] += future.result()["built"]
        except BrokenProcessPool:
            raise DataError(f"a worker process of the preparation died (killed, or out of memory: workers="
                            f"{engine.workers}); the pieces finished so far are kept: run the same command again "
                            "(with fewer workers if memory ran out)") from None
    # In this process: first the pieces no one holds, then, waiting for their locks, those other processes held
    # (done when their owner finishes; built here when it died): whatever is still missing.
    for wait in (False, True):
        for name, work in todo.items():
            for index in range(len(work.pieces)):
                if build_piece(work.final, work.work, index, work.pieces, tokenizer, dtype, wait=wait) == "built":
                    counts[name]["built"] += 1
    for name, work in todo.items():
        if not finish_task(work.final, work.work, work.corpus, work.pieces, tokenizer, spec.tokenizer_hash, dtype,
                           work.coverage):
            raise DataError(f"task {name!r}: pieces are still missing in {work.work} after every worker ended; "
                            "run the same command again")
        if engine.launcher == "slurm":
            counts[name]["built"] = len(work.pieces) - counts[name]["done"]  # by the array (or by this process)
    return counts


def piece_report(counts: dict[str, Counter]) -> str:
    """One line per task prepared now: pieces built now and kept from an earlier preparation."""
    return "\n".join(f"task {name}: {c['built']} piece(s) prepared now, {c['done']} kept from an earlier or "
                     "concurrent preparation" for name, c in counts.items())
