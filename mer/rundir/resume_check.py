"""The run directory checked against its checkpoint before anything is trained (docs/run_directory.md).

On a resume: the checkpoint's files must match the sha256s of its manifest (`mer.rundir.checkpoint_integrity`)
and metrics.jsonl must still hold, intact, the records the checkpoint has seen (`mer.rundir.metrics_prefix`).
Without a checkpoint, a non-empty metrics.jsonl is the log of an attempt that never reached its first
checkpoint (or whose checkpoint was deleted): the run starts from step 0, so that log is renamed aside
(`metrics.jsonl.discarded-<UTC time>`) instead of being appended to. Each refusal is a
`RunDirectoryDamaged` naming the file and the fix (`python -m mer.start_over`).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from mer.rundir.checkpoint import CHECKPOINT_DIRS, STATE_FILE
from mer.rundir.checkpoint_integrity import MANIFEST_FILE, verify_checkpoint
from mer.rundir.integrity import discarded_name
from mer.rundir.layout import METRICS_FILE
from mer.rundir.metrics_prefix import verify_prefix

log = logging.getLogger(__name__)



def published_checkpoint(run_dir: Path) -> Path | None:
    """The checkpoint directory a resume would use: `checkpoint/`, else `checkpoint.old/` (a kill between the
    renames), counting one whose manifest is there but whose state.pt is gone (a damaged one, not none)."""
    for name in CHECKPOINT_DIRS:
        directory = run_dir / name
        if (directory / STATE_FILE).is_file() or (directory / MANIFEST_FILE).is_file():
            return directory
    return None


def check_run_directory(run_dir: Path) -> None:
    """Verify the checkpoint and the metrics log before training (rank 0); set aside a log no checkpoint saw."""
    metrics = run_dir / METRICS_FILE
    checkpoint = published_checkpoint(run_dir)
    if checkpoint is None:
        if metrics.is_file() and metrics.stat().st_size > 0:
            aside = discarded_name(metrics)
            os.rename(metrics, aside)
            log.warning("%s has no checkpoint: training starts from step 0, and the metrics of the earlier attempt "
                        "are kept in %s instead of being appended to", run_dir, aside.name)
        return
    manifest = verify_checkpoint(checkpoint)
    if manifest is not None and manifest.get("metrics") is not None:
        verify_prefix(metrics, manifest["metrics"])
