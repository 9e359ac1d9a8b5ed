"""Where a sweep's jobs write, and what state their run directories are in (docs/run_directory.md).

A job's run directory is `<runs_dir>/<run name>`, the name derived from the job's overrides exactly as
`mer.run` derives it, so a launcher can skip completed runs before submitting them, the Optuna sweeper can
record each trial's directory, and `python -m sweeps.status` can list the runs a sweep still owes. The files
themselves are read by `mer.rundir.layout`, which owns their format.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from mer.rundir.layout import read_summary, run_name_from_overrides


def run_dir_of(job_config: Any) -> Path:
    """The run directory of a composed job config (`hydra.overrides.task` holds the job's overrides)."""
    name = job_config.get("run_name") or run_name_from_overrides(list(job_config.hydra.overrides.task))
    return Path(str(job_config.runs_dir)).expanduser() / name


def job_run_dir(config_loader: Any, sweep_config: Any, overrides: Sequence[str]) -> Path:
    """The run directory the job with these overrides will use (composes its config as the launcher does)."""
    return run_dir_of(config_loader.load_sweep_config(sweep_config, list(overrides)))


def completed_summary(run_dir: Path) -> dict[str, Any] | None:
    """The run's summary if it says completed (the trainer would skip this run), else None."""
    summary = read_summary(run_dir)
    return summary if summary is not None and summary.get("status") == "completed" else None


def dig(value: Any, path: str) -> Any:
    """`dig(summary, "metrics.retained_loss")`: a dotted path into nested dicts (KeyError if absent)."""
    for part in path.split("."):
        if isinstance(value, (list, tuple)) and part.lstrip("-").isdigit():
            value = value[int(part)]
        else:
            value = value[part]
    return value
