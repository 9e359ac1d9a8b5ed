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
from mer.rundir.integrity import RunDirectoryDamaged, discarded_name, start_over_hint
from mer.rundir.layout import METRICS_FILE, SUMMARY_FILE, read_json_checked
from mer.rundir.metrics_prefix import verify_prefix
from mer.rundir.status import REFUSED

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
    for name in CHECKPOINT_DIRS:  # a file in a checkpoint's place: never mistaken for "no checkpoint yet"
        if (run_dir / name).exists() and not (run_dir / name).is_dir():
            raise RunDirectoryDamaged(
                f"{run_dir / name} is not a folder, so the run's checkpoint cannot be read (nothing was changed); "
                f"put the checkpoint folder back, or {start_over_hint(run_dir)}")
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


def holds_a_run(run_dir: Path) -> bool:
    """Whether the directory holds what an earlier attempt trained: a checkpoint, or a summary.json other than the
    record of a refused config (a refused point wrote only that, and trains from scratch once its config passes)."""
    if published_checkpoint(run_dir) is not None:
        return True
    summary, problem = read_json_checked(run_dir / SUMMARY_FILE)
    return problem != "missing" and (summary is None or summary.get("status") != REFUSED)


def refuse_unrecorded_config(run_dir: Path, config_path: Path, problem: str | None) -> None:
    """Refuse a relaunch into a run whose recorded config (`config_path`) is `problem` (missing, unreadable): it
    could not be compared with this launch's config, so resuming might continue the run under another config
    (and overwrite the record). Nothing to refuse where the directory holds no run yet (or no more, after
    `python -m mer.start_over`)."""
    if not holds_a_run(run_dir):
        return
    raise RunDirectoryDamaged(
        f"{config_path} is {problem}, so this launch cannot be checked against the config {run_dir} was trained "
        f"with (config.yaml is not trusted in its place); restore the file, or {start_over_hint(run_dir)}")


def checkpoint_parameter_count(checkpoint: Path) -> int | None:
    """Parameters of the model in `checkpoint`'s state.pt, each shared (tied) tensor once; None when it holds no
    whole model (an FSDP checkpoint keeps its weights in sharded/). Memory-mapped: the weights are not read."""
    import torch

    try:
        state = torch.load(checkpoint / STATE_FILE, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # noqa: BLE001  (an unreadable state.pt is refused by the load itself, naming it)
        return None
    model = state.get("model") if isinstance(state, dict) else None
    if not isinstance(model, dict) or not model:
        return None
    seen, total = set(), 0
    for tensor in model.values():
        if not isinstance(tensor, torch.Tensor):
            continue
        key = (tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape))
        if key not in seen:
            seen.add(key)
            total += tensor.numel()
    return total


def check_model_size(run_dir: Path, n_params: int | None) -> None:
    """Refuse a checkpoint whose model has another size than the run's (`n_params`, from its summary.json): one
    copied in from another run passes the integrity checks (its own manifest matches) but cannot be loaded."""
    checkpoint = published_checkpoint(run_dir)
    if checkpoint is None or not isinstance(n_params, int):
        return
    found = checkpoint_parameter_count(checkpoint)
    if found is not None and found != n_params:
        raise RunDirectoryDamaged(
            f"{checkpoint / STATE_FILE} holds a model of {found:,} parameters, but the run {run_dir} has {n_params:,} "
            f"(its summary.json): the checkpoint belongs to another model; put this run's checkpoint back, or "
            f"{start_over_hint(run_dir)}")
