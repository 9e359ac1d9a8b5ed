"""Build a cache directory exactly once, safely under concurrent jobs and interruption.

Two Slurm jobs may prepare the same data at the same moment, and a job may be killed at any point.
So a cache entry is built in a private staging directory and renamed into place only when complete
(a rename is atomic on POSIX file systems), under a file lock so the second job waits for the first
instead of redoing the work. A directory that exists under its final name is always complete.

A killed build leaves its staging directory, `.<name>.staging-<host>-<pid>-<random>`, behind; the next build
of the same entry removes it (`remove_stale_staging`) when its owner is a dead process on this host, or, for
another host (a shared file system), while holding the entry's lock (so no one is building it) and only when
nothing in it changed for an hour (in case the file system's locks do not reach across hosts). One in use is
never removed.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock

from mer.files.atomic import publish_directory

log = logging.getLogger(__name__)

OTHER_HOST_STALE_S = 3600.0


def _host() -> str:
    return socket.gethostname().replace("-", "_") or "host"  # '-' separates the parts of a staging name


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def _newest_change(path: Path) -> float:
    newest = path.stat().st_mtime
    for root, _, files in os.walk(path):
        for name in files:
            try:
                newest = max(newest, os.stat(os.path.join(root, name)).st_mtime)
            except FileNotFoundError:
                pass
    return newest


def remove_stale_staging(final: Path, locked: bool = False) -> list[Path]:
    """Remove the staging directories that killed builds of `final` left behind; returns those removed.
    `locked`: the caller holds `final`'s lock (needed to remove another host's).

    Names are `.<name>.staging-<host>-<pid>-<random>` (older versions wrote `.<name>.staging-<pid>-<random>`,
    taken as this host's)."""
    removed = []
    prefix = f".{final.name}.staging-"
    for staging in final.parent.glob(f"{prefix}*"):
        parts = staging.name[len(prefix):].split("-")
        host, pid = (parts[0], parts[1]) if len(parts) == 3 else (_host(), parts[0])
        try:
            if host == _host():
                stale = pid.isdigit() and not _pid_alive(int(pid))
            else:
                stale = locked and time.time() - _newest_change(staging) > OTHER_HOST_STALE_S
        except FileNotFoundError:  # removed meanwhile (its owner finished or failed)
            continue
        if stale:
            shutil.rmtree(staging, ignore_errors=True)
            log.info("removed %s, left behind by a killed preparation", staging)
            removed.append(staging)
    return removed


@contextmanager
def atomic_directory(final: Path, timeout_s: float = 6 * 3600) -> Iterator[Path | None]:
    """Yield a staging directory to fill, or None when `final` already exists (nothing to do).

    On normal exit the staging directory is renamed to `final`; on an exception it is removed, so an
    interrupted build never leaves anything that looks complete.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_staging(final)
    if final.is_dir():
        yield None
        return
    with FileLock(str(final) + ".lock", timeout=timeout_s):
        if final.is_dir():  # another process finished it while we waited for the lock
            yield None
            return
        remove_stale_staging(final, locked=True)
        staging = final.parent / f".{final.name}.staging-{_host()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        staging.mkdir()
        try:
            yield staging
            publish_directory(staging, final)  # flushed, then renamed: complete even after a power cut
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)
