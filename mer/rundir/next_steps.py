"""What a finished run or sweep prints last: where its results are and the commands to run next.

A newcomer who has just trained a run should not have to read the docs to find `summary.json` or the report:
the run (`python -m mer.run`, mer/run.py) and the grid sweep's closing table (hydra_plugins/mer_sweeps) end with
these lines. Paths are shell-quoted so that the commands can be pasted as they are.
"""

from __future__ import annotations

import shlex
from pathlib import Path


def run_next_steps(run_dir: Path) -> str:
    """Where one run's results are and what to run next."""
    run = shlex.quote(str(run_dir))
    return "\n".join([
        f"results: {Path(run_dir) / 'summary.json'} (losses, forgetting, totals), metrics.jsonl (every step and "
        "evaluation), checkpoint/",
        f"next: python -m analysis.report {run} --out {shlex.quote(str(Path(run_dir) / 'report'))}   "
        "(tables, figures, report.md)",
        f"      python -m mer.export {run} --out <folder>   (the model as a Hugging Face folder)",
    ])


def sweep_next_steps(sweep_dir: Path) -> str:
    """Where a sweep's results are and what to run next."""
    sweep = shlex.quote(str(sweep_dir))
    return "\n".join([
        f"results: one folder per point in {sweep_dir}, each with its summary.json and metrics.jsonl",
        f"next: python -m analysis.report {sweep} --out {shlex.quote(str(Path(sweep_dir) / 'report'))}   "
        "(fits, figures, report.md)",
        f"      python -m sweeps.status {sweep}   (the state of every point, at any time)",
    ])
