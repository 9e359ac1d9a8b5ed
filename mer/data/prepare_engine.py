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
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
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


def run_engine(todo: dict[str, TaskWork], spec: GroupSpec, engine: PrepareConfig, tokenizer) -> dict[str, Counter]:
    """Prepare every task of `todo` with the chosen engine, then finish them here. Returns, per task, how many
    pieces this preparation built and how many it found done (kept from an earlier or concurrent one)."""
    dtype = token_dtype(len(tokenizer))
    counts = {name: Counter() for name in todo}
    for name, work in todo.items():
        counts[name]["done"] += sum(piece_done(work.work, i) for i in range(len(work.pieces)))
    if engine.launcher == "slurm":
        from mer.data.prepare_slurm import run_array

        run_array(spec, groups_of(todo, engine.slurm.array_tasks), engine.slurm)
    elif engine.workers > 1:
        items = [item for group in groups_of(todo, 1) for item in group]
        try:
            with ProcessPoolExecutor(engine.workers, mp_context=get_context("spawn"),
                                     initializer=_worker_init) as pool:
                results = pool.map(_build_in_worker, [spec] * len(items), items)
                for (name, _), result in zip(items, results, strict=True):
                    counts[name]["built"] += result["built"]
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
