"""A file's pages in the kernel's page cache: how much of it is resident (fincore), evicting it (fadvise,
or drop_caches for the whole machine) and reading it once to make it resident, for cold and warm reads."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path


def resident_fraction(path: Path) -> float | None:
    """Share of the file in the page cache (util-linux fincore), None if unavailable."""
    try:
        out = subprocess.run(["fincore", "--bytes", "--noheadings", "--raw", "--output", "RES", str(path)],
                             capture_output=True, text=True, timeout=60).stdout.split()
        return int(out[0]) / os.path.getsize(path)
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None


def evict(path: Path, global_drop: bool) -> None:
    """Drop the file's clean pages from the page cache (only this file unless `global_drop`)."""
    if global_drop:
        os.sync()
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("1")
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def warm(path: Path) -> float:
    """Read the whole file once (into the page cache); seconds."""
    started = time.perf_counter()
    with open(path, "rb", buffering=0) as f:
        while f.read(64 << 20):
            pass
    return time.perf_counter() - started
