"""Which code and which command produced a run: provenance.json beside config.json, and summary.json's `provenance`.

Every attempt at a run (the first launch and each resume) records the git commit of the code it ran, whether
tracked files differed from that commit (`git_dirty`), mer's version and the exact command line
(`python -m <module> <arguments>` as typed, shell-quoted). None of it is part of the config, so a run resumed by newer code is not refused
(`mer.launch.runner` compares configs only); the list of attempts shows that it happened (docs/run_directory.md).

The commit is that of the checkout `mer` is imported from, and only when `mer`'s own files are tracked
there: an installed wheel (even one inside a virtual environment inside some git checkout) has none, and
its `mer_version` says what it is. git is asked with a timeout and its messages are silenced; a missing
git or a broken repository gives null, never a failed run.
"""

from __future__ import annotations

import json
import os
import shlex
import socket
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import mer
from mer.rundir.layout import read_json, write_atomic

PROVENANCE_FILE = "provenance.json"
GIT_TIMEOUT_S = 10.0
PACKAGE_DIR = Path(mer.__file__).resolve().parent


def _git(directory: Path, *args: str) -> str | None:
    """stdout of `git -C directory args`, or None when git is missing, fails or hangs (stderr silenced)."""
    try:
        done = subprocess.run(["git", "-C", str(directory), *args], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                              stdin=subprocess.DEVNULL, timeout=GIT_TIMEOUT_S, text=True, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


def git_state(directory: Path = PACKAGE_DIR, tracked_file: str = "__init__.py") -> tuple[str | None, bool | None]:
    """(commit, dirty) of the git checkout holding `directory`, or (None, None) when `directory/tracked_file` is
    not tracked by one. Dirty: a tracked file differs from the commit (untracked files do not count)."""
    if _git(directory, "ls-files", "--error-unmatch", "--", tracked_file) is None:
        return None, None
    commit = _git(directory, "rev-parse", "HEAD")
    if commit is None:
        return None, None
    status = _git(directory, "status", "--porcelain", "--untracked-files=no")
    return commit.strip(), (None if status is None else bool(status.strip()))


def command_line(argv: list[str] | None = None) -> str:
    """The command line, shell-quoted, as the user typed it: `python -m mer.run ...` for a module run with `-m`,
    whose `sys.argv[0]` is otherwise the module's file (`.../mer/run.py`), a command nobody types; `argv` as given."""
    if argv is not None:
        return shlex.join(argv)
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    if spec is not None and spec.name:
        return shlex.join(["python", "-m", spec.name.removesuffix(".__main__"), *sys.argv[1:]])
    return shlex.join(sys.argv)


def this_attempt(argv: list[str] | None = None) -> dict[str, Any]:
    """What this process is: commit, dirty, mer version, command line, working directory, host and start time."""
    commit, dirty = git_state()
    return {"git_commit": commit, "git_dirty": dirty, "mer_version": mer.__version__,
            "command": command_line(argv), "cwd": os.getcwd(),
            "host": socket.gethostname(), "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def record_attempt(run_dir: Path, previous_summary: dict | None, argv: list[str] | None = None) -> dict[str, Any]:
    """Append this attempt to the run's attempts and write provenance.json; returns summary.json's `provenance`:
    this attempt's fields plus `attempts`, every attempt oldest first (this one last)."""
    saved = read_json(run_dir / PROVENANCE_FILE) or (previous_summary or {}).get("provenance") or {}
    attempts = [a for a in saved.get("attempts", []) if isinstance(a, dict)]
    current = this_attempt(argv)
    provenance = {**current, "attempts": [*attempts, current]}
    write_atomic(run_dir / PROVENANCE_FILE, json.dumps(provenance, indent=2))
    return provenance
