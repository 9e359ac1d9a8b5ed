"""The trainer's checkpoint: written as rank 0's `state.pt` and manifest, and under FSDP every rank's shards,
published by one rename once all of them are on disk (`mer.rundir.checkpoint`); refused on load when it was
written by another number of processes or parallelism mode."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from mer.parallel.distributed import Distributed
from mer.parallel.sharding import SHARDED_DIR, save_sharded
from mer.rundir.checkpoint import begin_checkpoint, commit_checkpoint, write_state
from mer.rundir.checkpoint_integrity import write_manifest


def write_checkpoint(run_dir: Path, dist: Distributed, step: int, state_dict: Callable[[], dict],
                     sharded_parts: tuple[torch.nn.Module, torch.optim.Optimizer, list | None] | None) -> None:
    """Rank 0 writes the checkpoint (every rank holds the same state); the others wait for it.

    `sharded_parts` (model, optimizer, Reptile anchor) under FSDP: every rank first writes its shards into rank
    0's temporary directory; rank 0 publishes it only after all of them (and its own state.pt) are on disk."""
    tmp = begin_checkpoint(run_dir) if dist.is_main else run_dir / "checkpoint.tmp"
    if sharded_parts is not None:
        dist.barrier()  # the temporary directory exists (and is empty) before anyone writes into it
        save_sharded(tmp / SHARDED_DIR, *sharded_parts, dist.rank)
        dist.barrier()  # every rank's shards are written
    if dist.is_main:
        state = state_dict()
        write_state(tmp, state)
        # Last file in, before the rename that publishes the checkpoint: every file's sha256 (verified on resume).
        write_manifest(tmp, state["metrics"], step)
        commit_checkpoint(run_dir)
    dist.barrier()


def check_same_layout(state: dict, world_size: int, sharded: bool) -> None:
    """Refuse a checkpoint written by another number of processes, or with the other of ddp and fsdp."""
    saved_world = int(state.get("world_size", 1))
    if saved_world != world_size:
        raise ValueError(f"the checkpoint was written by {saved_world} processes, this job has {world_size}; "
                         "resume with the same number of processes")
    if bool(state.get("sharded", False)) != sharded:
        was, now = ("fsdp", "ddp") if state.get("sharded") else ("ddp", "fsdp")
        raise ValueError(f"the checkpoint was written with parallel={was} and this job uses parallel={now}: "
                         f"resume with parallel={was}")
