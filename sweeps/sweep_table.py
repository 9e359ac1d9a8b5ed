"""The table a grid sweep (hydra/sweeper=mer_grid) prints and saves when it ends: one line per point.

Each point's state comes from its run directory, as `python -m sweeps.status` reads it (completed, with
the retained loss and FLOPs; failed or refused, with the reason), corrected by what its job reported this
time: a job refused by the config check is "refused" even where an earlier run's summary.json stays in its
directory, and a job that failed before writing any summary (a run directory holding another config, a job
lost by Slurm) is "failed" with the last line of its error. Saved as `<sweep dir>/sweep_table.txt` and
`sweep_table.json`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from mer.rundir.layout import strict_dumps, write_atomic
from sweeps.status import count_states, format_status, sweep_status

TABLE_NAME = "sweep_table"


@dataclass
class Point:
    """One job of the sweep and how it ended."""

    label: str
    """What sets this point apart from the others (its swept overrides), e.g. `alpha=0.25 k=500`."""
    run_dir: Path
    outcome: str
    """completed | failed | refused: what the job itself reported."""
    error: str | None = None
    """One line: the reason of a refusal, the last line of a failure."""


def point_labels(jobs: Sequence[Sequence[str]]) -> list[str]:
    """Each job's overrides minus those every job shares (the fixed ones): the swept values. Empty where
    nothing is swept (one job): the table then names the point by its run."""
    if not jobs:
        return []
    shared = set.intersection(*(set(job) for job in jobs))
    return [" ".join(o for o in job if o not in shared) for job in jobs]


def build_table(sweep_dir: Path, points: Sequence[Point]) -> dict[str, Any]:
    result = sweep_status(sweep_dir, expected_runs=[point.run_dir for point in points])
    for row, point in zip(result["runs"], points):
        row.update(point=point.label, run_dir=str(point.run_dir))
        if point.outcome == "refused":
            row.update(status="refused", error=point.error)
        elif point.outcome == "failed" and row["status"] not in ("failed", "refused"):
            row.update(status="failed", error=point.error)  # it failed before its summary said so
    result["counts"] = count_states(result["runs"])
    return result


def write_table(sweep_dir: Path, result: dict[str, Any]) -> tuple[Path, str]:
    """Save the table as text and JSON in the sweep dir; returns the text file's path and the text."""
    text = format_status(result)
    path = Path(sweep_dir) / f"{TABLE_NAME}.txt"
    write_atomic(path, text + "\n")
    write_atomic(path.with_suffix(".json"), strict_dumps(result, indent=2))
    return path, text


def not_completed(result: dict[str, Any]) -> int:
    return sum(row["status"] != "completed" for row in result["runs"])
