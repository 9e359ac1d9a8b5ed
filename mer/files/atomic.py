"""Atomic writes: a file or a directory is either its previous complete version or its new one, never half.

Every writer of the project that replaces a file or a directory goes through here (docs/run_directory.md):
the new content goes to a temporary name in the SAME directory (a rename is atomic only within one file
system), is flushed to disk (fsync), renamed over the destination, and then the directory itself is
flushed so that the rename survives a power cut. A failed write (a full disk, a kill) leaves the
destination untouched and removes its temporary file.
"""

from __future__ import annotations

import errno
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path


def _temporary_name(path: Path, kind: str = "tmp") -> Path:
    # Hidden, and unique per process and call, so two writers never share a temporary file.
    return path.with_name(f".{path.name}.{kind}-{os.getpid()}-{uuid.uuid4().hex[:8]}")


def fsync_directory(directory: Path) -> None:
    """Flush a directory's entries (the renames and creations in it) to disk."""
    fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    except OSError:  # some file systems (and platforms) cannot fsync a directory; the rename is still atomic
        pass
    finally:
        os.close(fd)


def fsync_file(path: Path) -> None:
    """Flush a file written by someone else's code (a library that only closes it) to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(directory: Path) -> None:
    """Flush every file and folder below `directory`, then `directory` itself."""
    for root, folders, files in os.walk(directory):
        for name in files:
            path = Path(root) / name
            if not path.is_symlink():
                fsync_file(path)
        for name in folders:
            fsync_directory(Path(root) / name)
    fsync_directory(directory)


def publish_file(tmp: Path, path: Path) -> None:
    """Rename the complete file `tmp` (a sibling of `path`) over `path`, flushed before and after."""
    fsync_file(tmp)
    os.replace(tmp, path)
    fsync_directory(Path(path).parent)


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside `path` to write (by any means); on success it is flushed and renamed
    to `path`, on an exception it is removed and `path` keeps its previous content."""
    path = Path(path)
    tmp = _temporary_name(path)
    try:
        yield tmp
        publish_file(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_bytes(path: Path, data: bytes) -> None:
    """Replace `path` by `data` atomically (module docstring)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        handle.write(data)


def write_text(path: Path, text: str, encoding: str = "utf-8") -> None:
    """Replace `path` by `text` atomically (module docstring)."""
    write_bytes(path, text.encode(encoding))


def publish_directory(staging: Path, final: Path, old: Path | None = None,
                      between_renames: Callable[[], None] | None = None) -> None:
    """Make the complete directory `staging` appear as `final` in one rename, replacing what was there.

    `staging` must be on the same file system as `final` (a sibling). Its files are flushed first. A
    previous `final` moves aside to `old` (default: a hidden unique sibling) and is deleted only once
    the new one is in place, so at every moment one complete version exists under one of the two
    names (`mer.rundir.checkpoint` looks for `checkpoint.old` when a kill hit between the renames).
    `between_renames` is called between the two renames (the fault-injection tests kill the process there).
    """
    staging, final = Path(staging), Path(final)
    fsync_tree(staging)
    old = Path(old) if old is not None else _temporary_name(final, "old")
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        os.rename(final, old)
    if between_renames is not None:
        between_renames()
    os.rename(staging, final)
    fsync_directory(final.parent)
    shutil.rmtree(old, ignore_errors=True)


class DiskFull(OSError):
    """A write failed for lack of space (ENOSPC, or a quota: EDQUOT); the message is one line with the fix."""

    def __init__(self, message: str, where: Path | None = None) -> None:
        super().__init__(errno.ENOSPC, message)
        self.where = where
        """The folder whose device is full, where the writer knows it (the data cache's, say)."""

    def __str__(self) -> str:
        return str(self.strerror)


def is_disk_full(error: BaseException | None) -> bool:
    """Whether `error`, or an error it was raised from or while handling, is a full disk or quota."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, DiskFull) or (isinstance(error, OSError) and error.errno in _NO_SPACE):
            return True
        error = error.__cause__ or error.__context__
    return False


_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)
