"""The part of metrics.jsonl a checkpoint has seen, and the check that a file still holds exactly that part.

A checkpoint records the log's state when it was taken (`MetricsTally.state`): its length in bytes, its
number of records, the sha256 of those bytes and the last record's step and event. On resume
`verify_prefix` accepts the file only if it is at least that long and its first `bytes` bytes are those
very records (complete JSON lines with that hash); the log is then cut there, at a record boundary,
and never padded. A checkpoint written by an older `mer` records only the length: the cut must then
fall at the end of a line and every line before it must be a JSON record. No torch here: the run
directory module imports this.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mer.rundir.integrity import RunDirectoryDamaged, start_over_hint


@dataclass
class MetricsTally:
    """A running summary of the bytes of metrics.jsonl: updated as lines are appended, so that a checkpoint
    never has to read the log again."""

    digest: Any = field(default_factory=hashlib.sha256)
    bytes: int = 0
    records: int = 0
    last: dict[str, Any] | None = None

    def add(self, line: bytes, record: dict[str, Any]) -> None:
        self.digest.update(line)
        self.bytes += len(line)
        self.records += 1
        self.last = {"step": record.get("step"), "event": record.get("event")}

    def state(self) -> dict[str, Any]:
        """What a checkpoint stores about the log (the `metrics` entry of state.pt and of its manifest)."""
        return {"bytes": self.bytes, "records": self.records, "sha256": self.digest.hexdigest(), "last": self.last}


def tally_lines(path: Path, data: bytes) -> MetricsTally:
    """Parse `data` (the start of `path`) as complete JSON lines; refuse a line that is not one."""
    tally = MetricsTally()
    lines = data.splitlines(keepends=True)
    # A line that is cut short is only reported after the complete lines before it parse: a damaged line
    # earlier in the file (which also shifts where the cut falls) is what the message must name.
    cut_short = lines.pop() if lines and not lines[-1].endswith(b"\n") else None
    for number, line in enumerate(lines, start=1):
        try:
            record = json.loads(line)
            if not isinstance(record, dict):
                raise ValueError("not a JSON object")
        except ValueError as error:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
            shown = line[:60].decode("utf-8", "replace").rstrip()
            raise RunDirectoryDamaged(f"{path}: line {number} is not a metrics record ({error}; it starts "
                                      f"{shown!r}); {start_over_hint(path.parent)}") from None
        tally.add(line, record)
    if cut_short is not None:
        raise RunDirectoryDamaged(f"{path}: its first {len(data)} bytes do not end at a record boundary (the last "
                                  f"line is cut short); {start_over_hint(path.parent)}")
    return tally


def verify_prefix(path: Path, state: dict[str, Any]) -> MetricsTally:
    """Check that `path` starts with the log a checkpoint saw (`state`, from `MetricsTally.state`); returns the
    tally of that part. Raises `RunDirectoryDamaged` naming the file, what differs and the fix."""
    expected = int(state["bytes"])
    if not path.is_file():
        raise RunDirectoryDamaged(f"{path} is missing, but the checkpoint has seen {expected} bytes of it "
                                  f"({state.get('records', '?')} records); {start_over_hint(path.parent)}")
    size = path.stat().st_size
    if size < expected:
        raise RunDirectoryDamaged(f"{path} has {size} bytes, fewer than the {expected} the checkpoint has seen: "
                                  f"records the run needs are missing (the file was cut or replaced); "
                                  f"{start_over_hint(path.parent)}")
    with open(path, "rb") as handle:
        data = handle.read(expected)
    tally = tally_lines(path, data)
    if "sha256" in state:  # checkpoints of older versions store the length alone
        seen = tally.state()
        if seen["sha256"] != state["sha256"] or seen["records"] != state["records"] or seen["last"] != state["last"]:
            raise RunDirectoryDamaged(
                f"{path} differs from the log the checkpoint has seen: its first {expected} bytes hold "
                f"{seen['records']} records ending with {seen['last']} and sha256 {seen['sha256'][:16]}..., the "
                f"checkpoint recorded {state['records']} records ending with {state['last']} and sha256 "
                f"{state['sha256'][:16]}... (the file was edited or replaced); {start_over_hint(path.parent)}")
    return tally
