"""The run directory's format, in one place: names, writing, reading, lock, status (docs/run_directory.md).

The name comes from the command-line overrides, never from a timestamp, so a re-launch, a Slurm
requeue and the analysis all find the same folder. Files are replaced atomically (`mer.files.atomic`:
temporary name, fsync, rename, fsync of the folder) so a kill at any moment leaves the previous complete
version. The trainer, the sweeps (`sweeps.rundirs`) and the analysis (`analysis.rundir`) read the files
through the functions here; the lock is `mer.rundir.lock`, the statuses `mer.rundir.status`.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mer.files.atomic import write_text
from mer.files.fault_points import fault_point
from mer.files.strict_json import dumps as strict_dumps  # noqa: F401  (JSON without NaN, for every writer)
from mer.rundir.lock import LOCK_FILE, RunDirLocked, RunLock, lock_is_held  # noqa: F401  (the run directory's lock)
from mer.rundir.status import effective_error, effective_status  # noqa: F401  (its status, as readers report it)

CONFIG_JSON = "config.json"
CONFIG_YAML = "config.yaml"
METRICS_FILE = "metrics.jsonl"
SUMMARY_FILE = "summary.json"

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
    """Replace the file `path` by `text` (UTF-8) atomically (`mer.files.atomic`)."""
    write_text(Path(path), text)


def read_json(path: Path) -> dict[str, Any] | None:
    """The JSON object in `path`; None when the file is missing, unreadable or not an object."""
    return read_json_checked(path)[0]


def read_json_checked(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    """(the JSON object in `path`, None) or (None, what is wrong: "missing", "unreadable (...)", "not an object")."""
    try:
        value = json.loads(Path(path).read_text(encoding="utf-8"))
    except (FileNotFoundError, NotADirectoryError):
        return None, "missing"
    except (OSError, ValueError) as error:
        return None, f"unreadable ({type(error).__name__}: {str(error).splitlines()[0][:200]})"
    return (value, None) if isinstance(value, dict) else (None, "not an object")


def read_summary(run_dir: Path) -> dict[str, Any] | None:
    """The run's summary.json, or None when there is none (or it cannot be read)."""
    return read_json(Path(run_dir) / SUMMARY_FILE)


@dataclass
class ConfigRead:
    """A run's resolved config as far as it could be read: `config` is None when neither file could be."""

    config: dict[str, Any] | None
    source: Path | None
    """The file it came from."""
    problems: list[str] = field(default_factory=list)
    """One line per config file that exists but could not be read (what is wrong with it)."""


def read_config(run_dir: Path) -> ConfigRead:
    """The run's config: config.json, or its YAML twin config.yaml when config.json cannot be read."""
    run_dir = Path(run_dir)
    problems, missing = [], []
    for name in (CONFIG_JSON, CONFIG_YAML):
        path = run_dir / name
        try:
            text = path.read_text(encoding="utf-8")
            if name == CONFIG_JSON:
                config = json.loads(text)
            else:
                import yaml  # only for runs whose config.json is gone

                config = yaml.safe_load(text)
        except FileNotFoundError:
            missing.append(name)
            continue
        except Exception as error:  # noqa: BLE001  (any parse error of either format means: unreadable)
            problems.append(f"{path} unreadable ({type(error).__name__}: {str(error).splitlines()[0][:200]})")
            continue
        if isinstance(config, dict):
            return ConfigRead(config, path, problems)
        problems.append(f"{path} holds no mapping ({type(config).__name__})")
    problems += [f"{run_dir / name} missing" for name in missing if problems]
    return ConfigRead(None, None, problems or [f"{run_dir} has neither {CONFIG_JSON} nor {CONFIG_YAML}"])


class MetricsLog:
    """Append-only metrics.jsonl; on resume it is cut back to what the checkpoint had seen, at a record
    boundary it has verified (`mer.rundir.metrics_prefix`), never padded: a file that is shorter than, or differs
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
        from mer.rundir.metrics_prefix import tally_lines

        if self._tally is None:  # read once; later lines are added as they are appended
            self._tally = tally_lines(self.path, self.path.read_bytes())
        return self._tally.state()

    def truncate(self, state: dict[str, Any] | int) -> None:
        """Cut the lines written after the checkpoint (the resumed run writes them again), once the part the
        checkpoint saw (`state`: its `checkpoint_state()`, or a bare byte count from an older checkpoint) is
        verified to be there, intact."""
        from mer.rundir.metrics_prefix import verify_prefix

        state = {"bytes": state} if isinstance(state, int) else state
        self._tally = verify_prefix(self.path, state)
        with open(self.path, "r+b") as handle:
            handle.truncate(self._tally.bytes)

    def append(self, record: dict[str, Any]) -> None:
        line = (strict_dumps(record) + "\n").encode()
        with open(self.path, "ab") as handle:
            fault_point("metrics_append", torn_write=(handle, record))
            handle.write(line)
            handle.flush()
        if self._tally is not None:
            self._tally.add(line, record)
        if self.on_append is not None:
            self.on_append(record)

    def records(self) -> list[dict[str, Any]]:
        from mer.rundir.metrics_prefix import tally_lines

        data = self.path.read_bytes()
        tally_lines(self.path, data)  # names the file and line of a damaged record
        return [json.loads(line) for line in data.splitlines() if line.strip()]
