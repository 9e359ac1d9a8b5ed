"""A run refused by the config check (RunConfig's `__post_init__`) before any work.

In a multirun the refusal is recorded in the point's run directory (`summary.json` with status "refused"
and the reason), so a sweep's table and `python -m sweeps.status` can say why the point has no results, and
the job raises `RunRefused` so that launchers and sweepers count it as a failed job and go on with the
other points. A single run only prints the reason and exits with code 2 (mer.run); it writes nothing.
"""

from __future__ import annotations

import json
from pathlib import Path

from mer.rundir.layout import SUMMARY_FILE, RunDirLocked, RunLock, read_json, write_atomic
from mer.rundir.lock import RunDirUnusable
from mer.rundir.status import REFUSED


class RunRefused(ValueError):
    """A config that cannot take effect as asked; the message says which setting and why."""


def record_refusal(run_dir: Path, run_name: str, reason: str) -> bool:
    """Write `<run_dir>/summary.json` saying refused; False (nothing written) where a run wrote one.

    A directory that holds a real run's summary (running, completed, failed, stopped) keeps it untouched: the
    refusal of today's config must not erase what an earlier, accepted config produced there. Nor is one that a
    live process owns touched (its lock is held, `mer.rundir.lock`); the check and the write happen under the lock."""
    summary_path = Path(run_dir) / SUMMARY_FILE
    try:
        with RunLock(run_dir):
            previous = read_json(summary_path)
            if summary_path.exists() and (previous is None or previous.get("status") != REFUSED):
                return False
            write_atomic(summary_path, json.dumps({"status": REFUSED, "error": reason, "run_name": run_name},
                                                  indent=2))
    except (RunDirLocked, RunDirUnusable):  # a live owner, or a runs_dir that cannot be written
        return False
    return True


HEADLINE_CHARS = 160
"""At most this many characters of a reason are shown in a table's reason column (`headline`)."""


def headline(reason: str, limit: int = HEADLINE_CHARS) -> str:
    """The first sentence of a refusal's reason, cut at `limit` characters on a word: what a table shows.

    A reason of several sentences says what is wrong and its first fix in the first one (e.g. `k=100 cannot fire:
    task(s) ... have fewer than 100 optimizer steps; k<=49 fits, or +experiment=cpu_paper`); the whole reason stays
    in the run's summary.json and the sweep's sweep_table.json, and was printed once when the point was refused."""
    text = " ".join(reason.split())
    end = text.find(". ")
    first = text if end < 0 else text[:end]
    if len(first) <= limit:
        return first
    cut = first[:limit - 3].rsplit(" ", 1)[0]
    return cut + "..."
