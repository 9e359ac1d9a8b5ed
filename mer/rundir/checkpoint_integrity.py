"""A checkpoint's manifest: the sha256 of every file it holds, written before the rename that publishes it.

`checkpoint/manifest.json` lists `state.pt` and, under FSDP, every file of `sharded/` with its size and
sha256, plus the state of metrics.jsonl the checkpoint belongs to (`mer.rundir.layout.MetricsLog.checkpoint_state`:
bytes, records, sha256 of those bytes, the last record's step and event). It is the last file written into
`checkpoint.tmp/`, so a checkpoint without it is either from an older `mer` (accepted with a warning; its
state.pt records the log's length alone), was never published, or lost its manifest (refused). `verify_checkpoint` recomputes every hash before the checkpoint is loaded: a
truncated file, a few flipped bits or a missing shard are refused with the file named (docs/run_directory.md).
"""

from __future__ import annotations

import json
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from mer.files.hashing import file_sha256
from mer.rundir.integrity import RunDirectoryDamaged, start_over_hint

log = logging.getLogger(__name__)

MANIFEST_FILE = "manifest.json"
MANIFEST_FORMAT = 1


def _checkpoint_files(directory: Path) -> list[Path]:
    """Every file of a checkpoint but its manifest, as paths relative to it, sorted (state.pt, sharded/...)."""
    return sorted(p.relative_to(directory) for p in directory.rglob("*")
                  if p.is_file() and p.relative_to(directory) != Path(MANIFEST_FILE))


def _hash_all(directory: Path, files: list[Path]) -> list[str]:
    # Threads: hashlib releases the GIL, so the shard files of an FSDP checkpoint are hashed in parallel.
    with ThreadPoolExecutor(max_workers=min(8, max(1, len(files)))) as pool:
        return list(pool.map(lambda f: file_sha256(directory / f), files))


def write_manifest(directory: Path, metrics: dict[str, Any] | None, step: int) -> None:
    """Hash every file written into `directory` (checkpoint.tmp/) and write manifest.json, fsynced.

    Called after state.pt and every rank's shards are on disk and before the rename that publishes them."""
    files = _checkpoint_files(directory)
    digests = _hash_all(directory, files)
    manifest = {
        "format": MANIFEST_FORMAT, "step": step,
        "files": {str(f): {"bytes": (directory / f).stat().st_size, "sha256": d} for f, d in zip(files, digests)},
        "metrics": metrics,
    }
    with open(directory / MANIFEST_FILE, "w") as handle:
        handle.write(json.dumps(manifest, indent=2))
        handle.flush()
        os.fsync(handle.fileno())


def read_manifest(directory: Path) -> dict[str, Any] | None:
    """The manifest of a published checkpoint; None for a checkpoint written before manifests existed."""
    path = directory / MANIFEST_FILE
    if not path.exists():
        return None
    try:
        manifest = json.loads(path.read_text())
        if not isinstance(manifest.get("files"), dict):
            raise ValueError("no 'files' table")
        return manifest
    except (ValueError, OSError) as error:
        raise RunDirectoryDamaged(f"{path} cannot be read ({error}): the checkpoint's manifest is damaged, so the "
                                  f"checkpoint cannot be trusted; {start_over_hint(directory.parent)}") from None


def verify_checkpoint(directory: Path) -> dict[str, Any] | None:
    """Refuse a checkpoint whose files differ from its manifest; returns the manifest (None: an old checkpoint).

    Every listed file must exist with its size and sha256, and no listed file may be missing; a file the
    manifest does not list (an extra file) is ignored."""
    manifest = read_manifest(directory)
    run_dir = directory.parent
    if manifest is None:
        _refuse_a_deleted_manifest(directory)
        log.warning("%s has no %s (written by an older mer): its files cannot be verified", directory, MANIFEST_FILE)
        return None
    files = [Path(name) for name in manifest["files"]]
    for name in files:
        path, expected = directory / name, manifest["files"][str(name)]
        if not path.is_file():
            raise RunDirectoryDamaged(f"{path} is missing: the checkpoint of step {manifest.get('step')} lists it "
                                      f"in {directory / MANIFEST_FILE}; {start_over_hint(run_dir)}")
        size = path.stat().st_size
        if size != expected["bytes"]:
            raise RunDirectoryDamaged(f"{path} has {size} bytes, its checkpoint manifest says {expected['bytes']} "
                                      f"(truncated or overwritten); {start_over_hint(run_dir)}")
    for name, digest in zip(files, _hash_all(directory, files)):
        expected = manifest["files"][str(name)]["sha256"]
        if digest != expected:
            raise RunDirectoryDamaged(f"{directory / name} is damaged: its sha256 is {digest[:16]}..., the checkpoint "
                                      f"manifest recorded {expected[:16]}... when it was written (changed bytes on "
                                      f"disk); {start_over_hint(run_dir)}")
    return manifest


def _refuse_a_deleted_manifest(directory: Path) -> None:
    """A checkpoint without a manifest is accepted only from a `mer` older than manifests: one whose state.pt
    records the metrics log's state as a table (`MetricsTally.state`) was written together with a manifest,
    so its manifest was deleted and its files cannot be trusted. state.pt is memory-mapped: no tensor is read."""
    import torch

    state_path = directory / "state.pt"
    try:
        state = torch.load(state_path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as error:  # a truncated or foreign file: no manifest to say which
        raise RunDirectoryDamaged(f"{directory / MANIFEST_FILE} is missing and {state_path} cannot be read ({error}); "
                                  f"{start_over_hint(directory.parent)}") from None
    if isinstance(state, dict) and isinstance(state.get("metrics"), dict):
        raise RunDirectoryDamaged(f"{directory / MANIFEST_FILE} is missing: {state_path} was written with a manifest "
                                  f"listing the sha256 of every checkpoint file, so without it the checkpoint cannot "
                                  f"be verified (the file was deleted); {start_over_hint(directory.parent)}")
