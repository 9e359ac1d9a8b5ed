"""Checkpoints: a dict of the parts' state_dicts, saved so that a kill at any moment leaves the last
complete one.

Written to `checkpoint.tmp/` and renamed over `checkpoint/` (the old one moves to `checkpoint.old/`
first, and is deleted only once the new one is in place). An FSDP checkpoint adds the ranks' shards
in `sharded/` beside `state.pt` (`mer.parallel.sharding`), written into the same temporary directory.
Loaded with `torch.load(weights_only=True)`: no arbitrary pickles.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import torch

from mer.files.atomic import publish_directory
from mer.files.fault_points import fault_point

STATE_FILE = "state.pt"
CHECKPOINT_DIRS = ("checkpoint", "checkpoint.old")  # where a resume looks, in this order


def begin_checkpoint(run_dir: Path) -> Path:
    """An empty `checkpoint.tmp/` to write the next checkpoint into (a leftover of a killed save is dropped)."""
    tmp = run_dir / "checkpoint.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    return tmp


def write_state(directory: Path, state: dict[str, Any]) -> None:
    """`state.pt` in `directory`, on disk (fsync) before the rename that publishes it."""
    with open(directory / STATE_FILE, "wb") as handle:
        torch.save(state, handle)
        handle.flush()
        os.fsync(handle.fileno())


def commit_checkpoint(run_dir: Path) -> Path:
    """Publish `checkpoint.tmp/` as `checkpoint/`; at every moment one complete checkpoint exists."""
    final, tmp, old = run_dir / "checkpoint", run_dir / "checkpoint.tmp", run_dir / "checkpoint.old"
    fault_point("checkpoint_commit")
    # Flushes every file (the FSDP shards too) before the renames; the old one goes only once the new one is in place.
    publish_directory(tmp, final, old=old, between_renames=lambda: fault_point("checkpoint_between_renames"))
    return final


def find_checkpoint(run_dir: Path) -> Path | None:
    """The latest complete checkpoint: `checkpoint/`, or `checkpoint.old/` if a kill hit between renames."""
    for name in CHECKPOINT_DIRS:
        path = run_dir / name / STATE_FILE
        if path.is_file():
            return path
    return None


def load_checkpoint(path: Path) -> dict[str, Any]:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # a truncated or foreign file
        from mer.rundir.integrity import RunDirectoryDamaged, start_over_hint

        raise RunDirectoryDamaged(f"checkpoint {path} cannot be read ({error}); "
                                  f"{start_over_hint(path.parent.parent)}") from None
