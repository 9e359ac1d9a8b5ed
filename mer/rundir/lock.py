"""One owner per run directory: an exclusive `flock` on `<run dir>/run.lock` (docs/run_directory.md).

The process that trains a run holds the lock from before it reads or writes anything in the directory
until it ends; the kernel releases it when the process dies, however it dies (kill -9 included), so a
stale lock never blocks the next launch. A second process finds the lock taken and is refused with the
holder's host, pid, start time and command, read from the lock file, without touching any file.

The lock file has a fixed size (`RECORD_SIZE`): its blocks are allocated when the lock is taken, so that
on a full disk the final status can still be written into them in place (`mer.rundir.status`).

Readers (`python -m sweeps.status`, the analysis) ask `lock_is_held` whether a live process owns a run;
the probe takes a shared lock for an instant, so `RunLock` retries for `wait_s` before refusing.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import shlex
import socket
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Self

from mer.files.atomic import DiskFull, is_disk_full

log = logging.getLogger(__name__)

LOCK_FILE = "run.lock"
RECORD_SIZE = 4096
UNLOCKED_ENV = "MER_UNLOCKED_RUN_DIRS"
"""Set to 1 to train without the lock on a file system that has none (the one-owner guarantee is then lost)."""
_NO_LOCKS = (errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL)


class RunDirLocked(RuntimeError):
    """Another live process owns the run directory; the message names it."""

    def __init__(self, run_dir: Path, holder: dict[str, Any] | None) -> None:
        self.run_dir, self.holder = Path(run_dir), holder
        if holder:
            who = (f"pid {holder.get('pid')} on {holder.get('host')}, started {holder.get('started')}: "
                   f"{holder.get('command')}")
        else:
            who = "a process that has not written its name yet"
        super().__init__(f"{run_dir} is in use by {who}. One process owns a run directory at a time: wait for it "
                         f"to end (or stop it) and run the command again, or give this run another run_name/runs_dir")


class RunDirUnusable(RuntimeError):
    """The run directory, its lock file or the runs folder above it cannot be used (not a folder, not writable);
    the message names the path and the fix. Nothing was written."""


def _unusable(path: Path, error: OSError, fix: str) -> RunDirUnusable:
    return RunDirUnusable(f"cannot use {path}: {error.strerror or type(error).__name__}; {fix}")


class RunDirLockUnsupported(RuntimeError):
    """The run directory's file system cannot lock files."""


def holder_record() -> dict[str, Any]:
    """Who holds the lock: host, pid, start time (UTC) and the command line."""
    return {"host": socket.gethostname(), "pid": os.getpid(),
            "started": datetime.now(UTC).isoformat(timespec="seconds"),
            "command": shlex.join([os.path.basename(sys.executable), *sys.orig_argv[1:]])}  # as typed: -m mer.run ...


def encode_record(record: dict[str, Any]) -> bytes:
    """`record` as JSON padded with spaces to RECORD_SIZE bytes (long fields shortened to fit)."""
    record = dict(record)
    data = json.dumps(record).encode()
    for key in ("command", "error"):
        if len(data) < RECORD_SIZE:
            break
        if isinstance(record.get(key), str):
            excess = len(data) - RECORD_SIZE + 1
            record[key] = record[key][: max(0, len(record[key]) - excess - 8)] + " [...]"
            data = json.dumps(record).encode()
    return data[: RECORD_SIZE - 1].ljust(RECORD_SIZE - 1) + b"\n"


def read_record(run_dir: Path) -> dict[str, Any] | None:
    """The lock file's record (the last holder, and a status it wrote there), or None."""
    try:
        value = json.loads((Path(run_dir) / LOCK_FILE).read_bytes().decode("utf-8", "replace").strip() or "null")
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def lock_is_held(run_dir: Path) -> bool:
    """Whether a live process holds the run directory's lock (a missing lock file: no)."""
    try:
        fd = os.open(Path(run_dir) / LOCK_FILE, os.O_RDONLY | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:  # a file system without locks: nobody can hold one
        return False
    finally:
        os.close(fd)  # also releases the shared lock
    return False


class RunLock:
    """`with RunLock(run_dir):` owns the run directory for the block (module docstring)."""

    def __init__(self, run_dir: Path, wait_s: float = 2.0) -> None:
        self.run_dir, self.path, self.wait_s = Path(run_dir), Path(run_dir) / LOCK_FILE, wait_s
        self.fd: int | None = None
        self.record: dict[str, Any] = {}  # what the lock file says now
        self.keep_file = False  # the lock file holds a status (a full disk): keep it when releasing
        self._created_dir = False

    def __enter__(self) -> Self:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def acquire(self) -> None:
        if not self.run_dir.is_dir():
            try:
                self.run_dir.mkdir(parents=True, exist_ok=True)
            except OSError as error:  # runs_dir (or a folder above it) is a file, read-only, ...
                raise _unusable(Path(error.filename or self.run_dir), error,
                                "runs_dir must be a folder this process can write: fix it or set "
                                "runs_dir=<another folder>") from None
            self._created_dir = True
        if not os.access(self.run_dir, os.W_OK | os.X_OK):  # a lock file left by a kill opens; the writes would not
            raise RunDirUnusable(f"cannot use {self.run_dir}: it is not writable by this process; fix its "
                                 "permissions, or set runs_dir=<another folder>")
        deadline = time.monotonic() + self.wait_s
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            except FileNotFoundError:  # the owner that just ended took away the empty directory it had made
                self.run_dir.mkdir(parents=True, exist_ok=True)
                continue
            except OSError as error:  # run.lock is a folder, or the run directory is read-only
                self._forget_created_dir()
                fix = (f"{self.path} must be a file (the run's lock): remove that folder (`rm -r` it) and run the "
                       "command again" if self.path.is_dir() else
                       f"the run directory {self.run_dir} must be writable by this process: fix its permissions, or "
                       "set runs_dir=<another folder>")
                raise _unusable(self.path, error, fix) from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                if time.monotonic() < deadline:  # maybe a reader's probe: it lets go at once
                    time.sleep(0.05)
                    continue
                self._forget_created_dir()
                raise RunDirLocked(self.run_dir, read_record(self.run_dir)) from None
            except OSError as error:
                os.close(fd)
                if error.errno not in _NO_LOCKS:
                    raise
                self._unsupported(error)
                return
            # A releasing owner may have removed the file we opened: then the lock is on a dead inode.
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
            self.run_dir.mkdir(parents=True, exist_ok=True)
        self.fd = fd
        try:
            self.write_record(holder_record())
        except OSError as error:
            self.release()
            if is_disk_full(error):
                raise DiskFull(f"no space left on the device of {self.run_dir} even for its "
                               f"{RECORD_SIZE}-byte lock file: free space there and run the command again") from None
            raise

    def write_record(self, record: dict[str, Any]) -> None:
        """Overwrite the lock file's record in place (its blocks already exist once it is full size)."""
        assert self.fd is not None
        self.record = dict(record)
        os.pwrite(self.fd, encode_record(record), 0)
        if os.fstat(self.fd).st_size != RECORD_SIZE:
            os.ftruncate(self.fd, RECORD_SIZE)
        os.fsync(self.fd)

    def release(self) -> None:
        if self.fd is None:
            return
        try:
            # An owner that ends removes the lock file (one that is killed leaves it, holding its name), and a
            # directory it created and left empty, so that a run refused or failed before it wrote anything leaves
            # nothing behind. Removing the file while still holding it is safe: a process waiting for it then
            # finds its inode gone and starts again. A file that holds a status (a full disk) stays.
            if not self.keep_file:
                self.path.unlink(missing_ok=True)
                if self._created_dir and not os.listdir(self.run_dir):
                    self.run_dir.rmdir()
        except OSError:
            pass
        finally:
            os.close(self.fd)  # releases the lock
            self.fd = None

    def _forget_created_dir(self) -> None:
        if self._created_dir:
            try:
                self.run_dir.rmdir()  # only if still empty: another process may be filling it
            except OSError:
                pass

    def _unsupported(self, error: OSError) -> None:
        message = (f"cannot lock {self.path}: {error.strerror}. The file system of runs_dir does not support file "
                   "locks (Lustre mounted without -o flock, NFS without its lock service). Mount it with locks, "
                   f"or put runs_dir on a file system that has them, or set {UNLOCKED_ENV}=1 to train without the "
                   "lock (then never start the same run twice at once); docs/run_directory.md")
        if os.environ.get(UNLOCKED_ENV) != "1":
            raise RunDirLockUnsupported(message) from None
        log.warning("%s; training without the lock (%s=1)", message.split(". ")[0], UNLOCKED_ENV)
