"""A sweep's plan: one row per point, the totals, printed and saved as CSV (docs/plan.md).

`python -m mer.run -m ... plan=true` runs every point of the grid in this process (the grid sweeper swaps
any launcher, Slurm included, for Hydra's in-process one, so nothing is submitted); each point returns its
row (`mer.plan.estimate.plan_row`) without training or writing its run directory, and the sweeper hands
the rows here. A point the config check refuses gets a row with its reason and no costs.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any, Sequence

from mer.rundir.layout import write_atomic
from mer.rundir.refusal import headline

CSV_NAME = "plan.csv"
TOTAL_COLUMNS = ("flops_train", "flops_eval", "flops_total", "gpu_hours", "hours_this_machine",
                 "disk_peak_bytes", "disk_checkpoint_bytes", "disk_buffer_bytes", "disk_exports_bytes", "steps")


def totals(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Sums over the points that have costs (refused-by-config points have none)."""
    costed = [r for r in rows if r.get("flops_total") is not None]
    summed: dict[str, Any] = {"points": len(rows), "points_costed": len(costed),
                              "points_refused": sum(bool(r.get("refused")) for r in rows)}
    for column in TOTAL_COLUMNS:
        values = [r.get(column) for r in costed]
        summed[column] = None if any(v is None for v in values) else sum(values)
    return summed


def write_csv(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    """The rows (and a last `TOTAL` row) as CSV, columns in the order of their first appearance."""
    columns: list[str] = []
    for row in rows:
        columns += [c for c in row if c not in columns]
    summed = totals(rows)
    total_row = {c: summed.get(c, "") for c in columns}
    total_row[columns[0]] = "TOTAL"
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, restval="")
    writer.writeheader()
    writer.writerows(rows)
    writer.writerow(total_row)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, buffer.getvalue())


def _hours(value: float | None) -> str:
    return "?" if value is None else f"{value:.3g}"


def format_sweep_plan(rows: Sequence[dict[str, Any]], gpu_note: str) -> str:
    """A table of the points and the totals."""
    width = max([len("point")] + [len(str(r["point"])) for r in rows])
    lines = [f"{'point':<{width}}  {'model':<9}{'steps':>9}{'Reptile':>9}{'FLOPs train':>13}{'FLOPs eval':>12}"
             f"{'mem/dev GiB':>12}{'h here':>9}{'GPU-h':>9}{'disk GiB':>10}  refused"]
    for r in rows:
        if r.get("flops_total") is None:
            lines.append(f"{r['point']:<{width}}  refused by the config check: {headline(r['refused'])}")
            continue
        lines.append(f"{r['point']:<{width}}  {r['model']:<9}{r['steps']:>9,}{r['reptile_steps']:>9,}"
                     f"{r['flops_train']:>13.3e}{r['flops_eval']:>12.3e}{r['memory_this_job_bytes'] / 2**30:>12.2f}"
                     f"{_hours(r['hours_this_machine']):>9}{_hours(r['gpu_hours']):>9}"
                     f"{r['disk_peak_bytes'] / 2**30:>10.2f}  {'yes' if r['refused'] else ''}")
    t = totals(rows)
    flops = "?" if t["flops_total"] is None else f"{t['flops_total']:.3e}"
    disk = "?" if t["disk_peak_bytes"] is None else f"{t['disk_peak_bytes'] / 2**30:.2f} GiB"
    lines.append(f"total of {t['points_costed']} points: {flops} FLOPs (train {t['flops_train'] or 0:.3e}, evaluation "
                 f"{t['flops_eval'] or 0:.3e}), {_hours(t['gpu_hours'])} GPU-hours {gpu_note}, "
                 f"{_hours(t['hours_this_machine'])} h one after another on this machine, disk {disk} "
                 f"(checkpoints x2 during writes, replay buffers, exports); {t['points_refused']} point(s) refused")
    busy = [str(r["point"]) for r in rows if r.get("rate_disturbed")]
    if busy:
        lines.append(f"the machine was busy while {len(busy)} of the points were timed (other processes held the cores): "
                     f"their hours may be too long ({', '.join(busy[:3])}{', ...' if len(busy) > 3 else ''}); plan "
                     "again on a quieter machine")
    return "\n".join(lines)


def report_sweep_plan(sweep_dir: Path, labels: Sequence[str], results: Sequence[Any], csv_path: str | None) -> Path:
    """Gather the points' rows (a job's return value, or its refusal), print the table, write the CSV."""
    from hydra.core.utils import JobReturn, JobStatus

    from mer.rundir.refusal import RunRefused

    rows = []
    for label, result in zip(labels, results, strict=True):
        value = result
        if isinstance(result, JobReturn):
            value = result.return_value if result.status == JobStatus.COMPLETED else result._return_value
        if isinstance(value, dict):
            rows.append({"point": label, **value})
        elif isinstance(value, RunRefused):
            rows.append({"point": label, "refused": str(value)})
        else:  # a plan that failed is a bug or bad input the user must see, not a silent gap in the totals
            raise RuntimeError(f"the plan of point {label!r} failed: {type(value).__name__}: {value}") from (
                value if isinstance(value, BaseException) else None)
    gpu = next((r for r in rows if r.get("gpu")), None)
    note = f"on {gpu['gpu']} (the MFU each point's plan states)" if gpu else ""
    path = Path(csv_path).expanduser() if csv_path else Path(sweep_dir) / CSV_NAME
    write_csv(path, rows)
    print(f"\n{format_sweep_plan(rows, note)}\n(saved in {path}; nothing was trained or submitted)", flush=True)
    return path
