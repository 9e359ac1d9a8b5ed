"""The learning-rate search behind a study: which rate each model size was searched at, which one it chose, and
whether the study's runs trained at the chosen rate.

A study whose sizes share one learning rate penalises the sizes that rate does not suit, and then "a bigger model"
is confounded with "a worse-tuned model". So a study preset (e.g. +sweep=size_matters) comes with a seed-0 search
(+sweep=size_matters_lr: every size at several rates, no replay) and trains each size at the rate the search chose.
The rule, fixed before the search was run: a size's rate is the one with the lowest mean learned loss (each task's
held-out loss right after training on it, averaged over the tasks); ties go to the smaller rate. A chosen rate at
either end of the searched grid is flagged, since a wider grid might choose differently.

    python -m analysis.report <study sweeps> --lr-search <search sweep> --out DIR --results-page PAGE

adds this search to the report and the page (`section`), with a check of every study run's rate against it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from analysis import tables
from analysis.collect import collect
from mer.rundir.layout import read_config

CRITERION = "learned_loss"
"""What the search minimises per size (a column of the collected runs)."""


@dataclass
class LrSearch:
    """One size x learning rate grid of no-replay runs and each size's chosen rate."""

    grid: pd.DataFrame
    """One row per search run: model, n_params_nonembedding, lr, learned_loss, retained_loss."""
    chosen: dict[str, float] = field(default_factory=dict)
    """Model label -> the rate with the lowest CRITERION."""
    problems: list[str] = field(default_factory=list)

    def at_edge(self, model: str) -> bool:
        """Whether the chosen rate is the smallest or largest rate searched for this size."""
        rates = sorted(self.grid.loc[self.grid["model"] == model, "lr"].unique())
        return len(rates) > 1 and self.chosen[model] in (rates[0], rates[-1])


def run_learning_rate(run_dir: str | Path) -> float | None:
    """The `optim.lr` a run was configured with (its config.json), or None when it cannot be read."""
    read = read_config(Path(run_dir))
    lr = ((read.config or {}).get("optim") or {}).get("lr")
    return float(lr) if isinstance(lr, (int, float)) else None


def with_learning_rates(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs with an `lr` column read from each run's config."""
    return runs.assign(lr=[run_learning_rate(d) for d in runs["run_dir"]])


def choose(grid: pd.DataFrame) -> dict[str, float]:
    """Each model's rate with the lowest mean CRITERION over its runs at that rate (ties: the smaller rate)."""
    means = grid.groupby(["model", "lr"], sort=True)[CRITERION].mean().reset_index()
    chosen = {}
    for model, rows in means.groupby("model", sort=False):
        finite = rows[rows[CRITERION].map(math.isfinite)]
        if not finite.empty:
            best = finite.sort_values([CRITERION, "lr"], kind="stable").iloc[0]
            chosen[str(model)] = float(best["lr"])
    return chosen


def search_from_runs(runs: pd.DataFrame) -> LrSearch:
    """The search among already collected runs: the usable no-replay runs (alpha = 0, Reptile off) with a rate."""
    problems = []
    if runs.empty:
        return LrSearch(pd.DataFrame(), problems=["the learning-rate search has no runs"])
    runs = runs[runs["usable"].astype(bool)] if "usable" in runs else runs
    searched = runs[(runs["alpha"] == 0) & (~runs["reptile"].astype(bool))]
    if len(searched) < len(runs):
        problems.append(f"{len(runs) - len(searched)} run(s) of the learning-rate search used replay or Reptile "
                        "and are left out of it (a search compares rates without replay)")
    if "lr" not in searched:
        searched = with_learning_rates(searched)
    grid = searched[["model", "n_params_nonembedding", "lr", "learned_loss", "retained_loss"]].dropna(subset=["lr"])
    return LrSearch(grid.reset_index(drop=True), choose(grid), problems)


def load_search(paths: Sequence[str | Path]) -> LrSearch:
    """Collect the search's run directories (sweep folders, run folders or globs) and choose each size's rate."""
    col = collect(paths, progress=False)
    search = search_from_runs(col.runs)
    search.problems = list(col.problems) + search.problems
    return search


def study_rate_check(search: LrSearch, study_runs: pd.DataFrame) -> list[str]:
    """One sentence per size of the study: trained at the chosen rate, or not (which rate, which was chosen)."""
    if study_runs.empty:
        return []
    runs = study_runs if "lr" in study_runs else with_learning_rates(study_runs)
    lines = []
    for model, rows in runs.groupby("model", sort=False):
        used = sorted({float(x) for x in rows["lr"].dropna()})
        want = search.chosen.get(str(model))
        if want is None:
            lines.append(f"{model}: not in the search; trained at {_rates(used)}")
        elif used == [want]:
            lines.append(f"{model}: trained at {want:g}, the rate the search chose")
        else:
            lines.append(f"{model}: trained at {_rates(used)}, but the search chose {want:g}: "
                         "this size's results are not at its searched rate")
    return lines


def _rates(rates: list[float]) -> str:
    return ", ".join(f"{r:g}" for r in rates) or "an unknown rate"


def grid_table(search: LrSearch) -> pd.DataFrame:
    """Sizes (rows, by non-embedding parameters) x rates (columns): mean learned loss, the chosen cell in bold."""
    g = search.grid
    means = g.groupby(["model", "lr"])[CRITERION].mean().unstack("lr")
    order = g.drop_duplicates("model").sort_values("n_params_nonembedding")
    rows = []
    for model, ne in zip(order["model"], order["n_params_nonembedding"], strict=True):
        row = {"model": model, "non-embedding": f"{ne / 1e3:,.0f}k" if pd.notna(ne) else "?"}
        for lr in means.columns:
            value = means.loc[model, lr] if model in means.index else math.nan
            cell = "–" if not math.isfinite(value) else f"{value:.3f}"
            row[f"lr {lr:g}"] = f"**{cell}**" if search.chosen.get(model) == lr else cell
        row["chosen"] = f"{search.chosen[model]:g}" + (" (grid edge)" if search.at_edge(model) else "") \
            if model in search.chosen else "–"
        rows.append(row)
    return pd.DataFrame(rows)


def section(search: LrSearch | None, study_runs: pd.DataFrame) -> list[str]:
    """Markdown: the rule, the grid with each size's choice, and whether the study used the chosen rates."""
    if search is None:
        return []
    lines = ["## The learning-rate search", "",
             "Each size's learning rate was chosen before the study by a seed-0 search without replay (`analysis/lr_search.py`): "
             "the rate with the lowest mean learned loss (each task's held-out loss right after training on it, mean over "
             "the tasks; ties to the smaller rate). Cells: learned loss (nats/token); bold: the chosen rate. "
             "\"grid edge\": the chosen rate is the smallest or largest searched, so a wider grid might choose differently.", ""]
    if search.grid.empty:
        return lines + ["The search has no usable runs: " + "; ".join(search.problems), ""]
    lines += [tables.to_markdown(grid_table(search))]
    check = study_rate_check(search, study_runs)
    if check:
        lines += ["The study's runs against the search:", ""] + [f"- {line}" for line in check] + [""]
    return lines + [f"- Note: {p}" for p in search.problems] + ([""] if search.problems else [])
