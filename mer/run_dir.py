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
from pathlib import Path
from typing import Any

# Overrides that change where or how a run is executed, not what it computes: they do not name the run.
NON_SEMANTIC_KEYS = (
    "runs_dir", "run_name", "device", "threads", "log_every", "checkpoint_every", "data.data_dir",
    "reptile_anchor_device", "buffer.prefetch", "sweep",
    "compile", "activation_checkpointing", "peak_flops", "parallel", "fsdp_on_cpu",
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
        if key in NON_SEMANTIC_KEYS or key.startswith("hydra"):
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
    """Append-only metrics.jsonl; on resume it is cut back to what the checkpoint had seen."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.path.touch(exist_ok=True)

    def size(self) -> int:
        return self.path.stat().st_size

    def truncate(self, size: int) -> None:
        # Lines written after the checkpoint would be written again by the resumed run: drop them.
        with open(self.path, "r+b") as handle:
            handle.truncate(size)

    def append(self, record: dict[str, Any]) -> None:
        with open(self.path, "a") as handle:
            handle.write(json.dumps(record) + "\n")
            handle.flush()

    def records(self) -> list[dict[str, Any]]:
        with open(self.path) as handle:
            return [json.loads(line) for line in handle if line.strip()]
