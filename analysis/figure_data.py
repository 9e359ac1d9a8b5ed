"""The tidy tables shaped for the figures: configurations in a fixed order, their seeds averaged.

A configuration (model, alpha, Reptile k and eps) is never pooled with another one; its seeds give a
mean and a sample standard deviation. Every figure (`analysis.figures`, `analysis.alignment`) draws
from these helpers, so they all order and average runs the same way. pandas only: no matplotlib.
"""

from __future__ import annotations

from collections.abc import Iterator

import pandas as pd

from analysis.families import add_setting_columns

CONFIG = ["model", "alpha", "k_eff", "eps_eff"]
"""Columns that identify a configuration; its runs differ only in the seed."""


def ordered_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """`runs` with setting columns (`add_setting_columns`), sorted by model size, alpha, then Reptile (k, eps)."""
    r = add_setting_columns(runs)
    return r.assign(_n=r["n_params"].fillna(0)).sort_values(["_n", "model", *CONFIG[1:], "seed"]).drop(columns="_n")


def evals_with_config(evals: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """Evaluations of `runs` with each run's configuration columns and setting label (from `runs`)."""
    cols = [*CONFIG, "setting"]
    return evals.drop(columns=[c for c in cols if c in evals.columns]).merge(runs[["run_id", *cols]], on="run_id")


def over_seeds(df: pd.DataFrame, keys: list[str], values: list[str]) -> pd.DataFrame:
    """One row per `keys` group, sorted by `keys`: for each column v of `values` its mean `v` and
    sample std `v_std` (NaN for one run), and `n`, the number of runs (seeds) in the group."""
    g = df.groupby(keys, sort=True)
    out = g[values].mean().join(g[values].std(ddof=1).add_suffix("_std"))
    out["n"] = g["run_id"].nunique()
    return out.reset_index()


def in_run_order(table: pd.DataFrame, runs: pd.DataFrame) -> Iterator[tuple[tuple, pd.DataFrame]]:
    """(configuration key, its rows of `table`) for each configuration of `runs` that `table` has, in `runs`' order."""
    groups = dict(list(table.groupby(CONFIG, sort=False)))
    for key in dict.fromkeys(runs[CONFIG].itertuples(index=False, name=None)):
        if key in groups:
            yield key, groups[key]
