"""`python -m mer.run ... plan=true`: print the plan of one run (a sweep's point returns it as its row)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mer.config.run_config import RunConfig
from mer.plan.estimate import build_plan, format_plan, plan_row
from mer.plan.fit import fit_refusal


def print_plan(cfg: RunConfig, run_name: str) -> dict[str, Any]:
    """Build, print and return the plan's row; written as CSV to `plan_csv` when set (a single run)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    plan = build_plan(cfg, run_name, measure=True)
    refusal = fit_refusal(cfg, run_name, plan)
    row = plan_row(plan, refusal)
    if HydraConfig.get().mode == RunMode.MULTIRUN:
        return row  # a sweep prints one line per point and the totals, and writes all rows at once
    print(format_plan(plan, refusal), flush=True)
    if cfg.plan_csv is not None:
        from mer.plan.sweep_plan import write_csv

        write_csv(Path(cfg.plan_csv).expanduser(), [row])
        print(f"(saved in {cfg.plan_csv})", flush=True)
    return row
