"""The run directory: its name, config.yaml, metrics.jsonl and summary.json (docs/run_directory.md).

The name comes from the command-line overrides, never from a timestamp, so a re-launch, a Slurm
requeue and the analysis all find the same folder. Files are replaced atomically (write to a temporary
name, then rename) so a kill at any moment leaves the previous complete version.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mer.fault_points import fault_point

# Overrides that change where or how a run is executed, not what it computes: they do not name the run.
NON_SEMANTIC_KEYS = (
    "runs_dir", "run_name", "device", "threads", "log_every", "checkpoint_every", "data.data_dir",
    "reptile_anchor_device", "buffer.prefetch", "sweep",
    "compile", "activation_checkpointing", "peak_flops", "parallel", "fsdp_on_cpu",
    "logger",  # experiment trackers mirror metrics.jsonl (docs/trackers.md); logger.* overrides too
    "plan", "plan_csv", "plan_mfu", "plan_gpu", "plan_world_size", "max_hours", "allow_oversize",
)


def run_name_from_overrides(overrides: list[str]) -> str:
    """`['k=500', 'alpha=0.25']` -> `'alpha=0.25,k=500'`; no overrides -> `'default'`.

    Sorted so the order on the command line does not matter; characters unsafe in a file name are
    replaced; very long names are shortened with a hash so they stay unique and legal.
    """
    kept = []
    for override in overrides:
        key = override.split("=", 1)[0].lstrip("+~")
        if key in NON_SEMANTIC_KEYS or key.split(".", 1)[0] == "logger" or key.startswith("hydra"):
            continue
        kept.append(override.lstrip("+"))
    if not kept:
        return "default"
    name = re.sub(r"[^A-Za-z0-9=,._\-+]", "_", ",".join(sorted(kept)))
    if len(name) > 150:
        name = name[:120] + "-" + hashlib.sha256(name.encode()).hexdigest()[:16]
    return name


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


class MetricsLog:
    """Append-only metrics.jsonl; on resume it is cut back to what the checkpoint had seen, at a record
    boundary it has verified (`mer.metrics_prefix`), never padded: a file that is shorter than, or differs
    from, what the checkpoint saw is refused with the file named and a fix."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.path.touch(exist_ok=True)
        self._tally = None  # MetricsTally of the file's bytes, from the first checkpoint_state() or truncate() on
        self.on_append: Callable[[dict[str, Any]], None] | None = None
        """Called with every record once it is written: the experiment trackers' queue (mer.trackers)."""

    def size(self) -> int:
        return self.path.stat().st_size

    def checkpoint_state(self) -> dict[str, Any]:
        """Bytes, records, sha256 and last record of the log now: stored in every checkpoint."""
        from mer.metrics_prefix import tally_lines

        if self._tally is None:  # read once; later lines are added as they are appended
            self._tally = tally_lines(self.path, self.path.read_bytes())
        return self._tally.state()

    def truncate(self, state: dict[str, Any] | int) -> None:
        """Cut the lines written after the checkpoint (the resumed run writes them again), once the part the
        checkpoint saw (`state`: its `checkpoint_state()`, or a bare byte count from an older checkpoint) is
        verified to be there, intact."""
        from mer.metrics_prefix import verify_prefix

        state = {"bytes": state} if isinstance(state, int) else state
        self._tally = verify_prefix(self.path, state)
        with open(self.path, "r+b") as handle:
            handle.truncate(self._tally.bytes)

    def append(self, record: dict[str, Any]) -> None:
        line = (json.dumps(record) + "\n").encode()
        with open(self.path, "ab") as handle:
            fault_point("metrics_append", torn_write=(handle, record))
            handle.write(line)
            handle.flush()
        if self._tally is not None:
            self._tally.add(line, record)
        if self.on_append is not None:
            self.on_append(record)

    def records(self) -> list[dict[str, Any]]:
        from mer.metrics_prefix import tally_lines

        data = self.path.read_bytes()
        tally_lines(self.path, data)  # names the file and line of a damaged record
        return [json.loads(line) for line in data.splitlines() if line.strip()]
