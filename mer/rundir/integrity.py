"""What the integrity checks of a run directory share: the refusal they raise and the one fix for a damaged run.

Every check runs before any training (docs/run_directory.md, "What is verified when"). A damaged run
directory is refused with `RunDirectoryDamaged`, whose message names the file, what is wrong and a fix
that works: "start over" (`python -m mer.start_over RUN_DIR`, which keeps the old metrics renamed aside
and removes the checkpoint) and the same command again.
"""

from __future__ import annotations

import shlex
import time
from pathlib import Path


class RunDirectoryDamaged(ValueError):
    """A run directory whose checkpoint or metrics log is damaged or inconsistent; nothing was trained."""


def start_over_hint(run_dir: Path) -> str:
    """The fix for a run directory that cannot resume: a command that really starts the run again."""
    command = f"python -m mer.start_over {shlex.quote(str(run_dir))}"
    return (f"to start the run over, run `{command}` (it renames metrics.jsonl and summary.json aside and removes "
            "the checkpoint), then the same training command again")


def discarded_name(path: Path) -> Path:
    """`metrics.jsonl` -> `metrics.jsonl.discarded-20260101T120000Z` (a new name: never overwrites one)."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    candidate, n = path.with_name(f"{path.name}.discarded-{stamp}"), 1
    while candidate.exists():
        n += 1
        candidate = path.with_name(f"{path.name}.discarded-{stamp}-{n}")
    return candidate
