"""Test hook: kill this process with SIGKILL at a named point, to test recovery from a crash there.

Used only by the fault-injection suite (tests/test_fault_injection.py). With the environment variable
`MER_FAULT_AT` unset (always, outside that suite) `fault_point` returns at once and does nothing else.

`MER_FAULT_AT=<point>:<n>` makes the process SIGKILL itself the n-th time (1-based, counted in this
process) it reaches `fault_point("<point>")`, after printing `mer fault point <point>:<n> reached` to
stderr so that the test can check the kill landed where it meant it to. A SIGKILL cannot be caught: no
handler, `finally` or atexit runs, exactly as with `kill -9` or the kernel's OOM killer.

The points (where the one-line calls are), and what is on disk when the kill comes:

- `checkpoint_commit`: `mer.rundir.checkpoint.commit_checkpoint`, before any rename; a complete `checkpoint.tmp/`
  beside the previous `checkpoint/`.
- `checkpoint_between_renames`: `commit_checkpoint`, after `checkpoint/` became `checkpoint.old/`;
  `checkpoint.old/` and `checkpoint.tmp/`, no `checkpoint/`.
- `metrics_append`: `mer.rundir.layout.MetricsLog.append`; the first half of the record's line, without its newline
  (a torn write).
- `evaluation`: `mer.training.trainer.Trainer.evaluate`, after the forwards, before the record is appended; the log up
  to the previous record.
- `prepare_piece`: `mer.data.shard_build`, in the middle of a piece of a sharded preparation: its train shard
  written under a temporary name, its val shard not yet, nothing renamed, no record of the piece.
- `task_boundary`: `mer.training.trainer.Trainer.fit`, after a task's boundary evaluation, before the checkpoint that
  ends the task; the boundary record appended, no checkpoint of it.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from typing import IO, Any

ENV = "MER_FAULT_AT"
_hits: dict[str, int] = {}


def fault_point(name: str, torn_write: tuple[IO, dict[str, Any]] | None = None) -> None:
    """SIGKILL this process if `MER_FAULT_AT` names this point and its hit count; nothing otherwise.

    `torn_write=(handle, record)`: first write the first half of the record's JSON line to `handle` and
    flush it, so the kill leaves a partly written line, as a kill in the middle of the write would. (The
    record is passed, not its text, so that nothing is serialised when the hook is off.)"""
    target = os.environ.get(ENV)
    if not target:
        return
    point, _, count = target.rpartition(":")
    if not point or not count.isdigit() or int(count) < 1:
        raise ValueError(f"{ENV}={target!r}: expected <point>:<n>, e.g. checkpoint_commit:2 (n counts from 1)")
    if point != name:
        return
    _hits[name] = _hits.get(name, 0) + 1
    if _hits[name] != int(count):
        return
    if torn_write is not None:
        handle, record = torn_write
        text = json.dumps(record) + "\n"
        half = text[: len(text) // 2]
        handle.write(half.encode() if "b" in getattr(handle, "mode", "") else half)  # a text or a binary file
        handle.flush()
    print(f"mer fault point {target} reached", file=sys.stderr, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
