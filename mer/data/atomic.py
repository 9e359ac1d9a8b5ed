"""Build a cache directory exactly once, safely under concurrent jobs and interruption.

Two Slurm jobs may prepare the same data at the same moment, and a job may be killed at any point.
So a cache entry is built in a private staging directory and renamed into place only when complete
(a rename is atomic on POSIX file systems), under a file lock so the second job waits for the first
instead of redoing the work. A directory that exists under its final name is always complete.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock

from mer.atomic_write import publish_directory


@contextmanager
def atomic_directory(final: Path, timeout_s: float = 6 * 3600) -> Iterator[Path | None]:
    """Yield a staging directory to fill, or None when `final` already exists (nothing to do).

    On normal exit the staging directory is renamed to `final`; on an exception it is removed, so an
    interrupted build never leaves anything that looks complete.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    if final.is_dir():
        yield None
        return
    with FileLock(str(final) + ".lock", timeout=timeout_s):
        if final.is_dir():  # another process finished it while we waited for the lock
            yield None
            return
        staging = final.parent / f".{final.name}.staging-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        staging.mkdir()
        try:
            yield staging
            publish_directory(staging, final)  # flushed, then renamed: complete even after a power cut
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)
