"""Gradient alignment over training: the figure, the table and the report section (runs with eval.grad_alignment).

With `eval.grad_alignment=true` every evaluation record holds `grad_cosine` (earlier task -> cosine of its
held-out gradient with the current task's), `grad_cosine_mean` and `grad_norm` (`mer.evaluation.grad_alignment`,
docs/run_directory.md). Here they become:

- columns `grad_cosine_mean` and `grad_cosine.<task>` of the evals table (NaN where not measured: runs without
  alignment, and every evaluation of the first task, which has no earlier task);
- `figures/grad_alignment.{png,pdf}`: the mean cosine over new-data tokens, one panel per model, colour = replay
  rate alpha, line style = Reptile setting (`analysis.palette`), mean over seeds with a band of ± 1 sample std;
- `tables/alignment.{md,tex}`: per configuration the mean cosine over training (each run's mean over its
  evaluations from the second task on, then mean ± std over seeds, with a 95% t interval), the same at task
  boundaries only, and the lowest mean cosine an evaluation saw;
- a "Gradient alignment" section appended to report.md, naming the runs that have no alignment records.

Positive cosines mean that a step on the current task also lowers the earlier tasks' losses (to first order);
negative ones, that it raises them: the interference replay and Reptile are meant to reduce.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from analysis.seed_intervals import mean_interval

MEAN = "grad_cosine_mean"
FIGURE = "grad_alignment"
TABLE = "alignment"
CAPTION = ("Gradient alignment: cosine between the current task's held-out gradient and each earlier task's, "
           "averaged over earlier tasks and over evaluations from the second task on; mean ± std over seeds")


def alignment_columns(evals: Sequence[dict[str, Any]], tasks: Sequence[str]) -> dict[str, np.ndarray]:
    """`grad_cosine_mean` and `grad_cosine.<task>` for each evaluation record, NaN where absent or null."""
    def number(value: Any) -> float:
        return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else math.nan

    columns = {MEAN: np.array([number(e.get(MEAN)) for e in evals], dtype=float)}
    for task in tasks:
        columns[f"grad_cosine.{task}"] = np.array([number((e.get("grad_cosine") or {}).get(task)) for e in evals],
                                                  dtype=float)
    return columns


def measured(evals: pd.DataFrame) -> pd.DataFrame:
    """The evaluations that measured an alignment (a finite `grad_cosine_mean`)."""
    if evals.empty or MEAN not in evals:
        return evals.iloc[0:0]
    return evals[np.isfinite(evals[MEAN].to_numpy(dtype=float))]


def per_run(evals: pd.DataFrame) -> pd.DataFrame:
    """One row per run with alignment: `mean_cosine` (over its evaluations), `boundary_cosine` (over its task-end
    evaluations), `min_cosine` and `n_alignment_evals`."""
    ev = measured(evals)
    if ev.empty:
        return pd.DataFrame(columns=["run_id", "mean_cosine", "boundary_cosine", "min_cosine", "n_alignment_evals"])
    groups = ev.groupby("run_id", sort=False)
    out = pd.DataFrame({"mean_cosine": groups[MEAN].mean(), "min_cosine": groups[MEAN].min(),
                        "n_alignment_evals": groups[MEAN].size()})
    out["boundary_cosine"] = ev[ev["boundary"].astype(bool)].groupby("run_id")[MEAN].mean()
    return out.reset_index()


def alignment_table(runs: pd.DataFrame, evals: pd.DataFrame) -> pd.DataFrame:
    """Per configuration (model, alpha, Reptile) with alignment records: seeds, evaluations per run, mean cosine
    ± std over seeds and its 95% interval, the mean at task boundaries, and the lowest evaluation's mean cosine."""
    from analysis.figure_data import ordered_runs  # imported here, not above: collect stays light
    from analysis.tables import fmt_mean_std

    stats = per_run(evals)
    runs = ordered_runs(runs)
    runs = runs.merge(stats, on="run_id", how="inner")
    rows = []
    for setting, grp in runs.groupby("setting", sort=False):
        est = mean_interval(grp["mean_cosine"])
        rows.append({
            "method": setting, "seeds": len(grp), "evaluations": _fmt_count(grp["n_alignment_evals"]),
            "mean cosine": fmt_mean_std(grp["mean_cosine"]),
            "95% CI": f"[{est.low:.3f}, {est.high:.3f}]" if est.has_interval else "–",
            "at task ends": fmt_mean_std(grp["boundary_cosine"]),
            "lowest": f"{grp['min_cosine'].min():.3f}",
        })
    return pd.DataFrame(rows, columns=["method", "seeds", "evaluations", "mean cosine", "95% CI", "at task ends",
                                       "lowest"])


def plot_alignment(evals: pd.DataFrame, runs: pd.DataFrame):
    """Mean gradient cosine over new-data tokens, one panel per model, one line per configuration.

    Colour: replay rate alpha (black: 0); line style and end marker: Reptile setting; a line is the mean over
    seeds with a band of ± one sample std. The dotted line is 0 (orthogonal gradients). Returns a matplotlib
    Figure, or None when no run of `runs` has alignment records."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import EngFormatter, MaxNLocator

    from analysis import palette
    from analysis.figure_data import CONFIG, evals_with_config, in_run_order, ordered_runs, over_seeds
    from analysis.figure_marks import line_with_band
    from analysis.figure_style import SPREAD, TICK_FONT, fmt_params, group_label, legend, suptitle

    ev = measured(evals)
    ev = ev[ev["run_id"].isin(runs["run_id"])] if not ev.empty else ev
    if ev.empty:
        return None
    runs = ordered_runs(runs[runs["run_id"].isin(ev["run_id"])])
    ev = evals_with_config(ev, runs)
    models = list(dict.fromkeys(runs["model"]))
    ncol = min(3, len(models))
    nrow = math.ceil(len(models) / ncol)
    fig = Figure(figsize=(5.0 * ncol + 1.6, 3.3 * nrow + 0.5), layout="constrained")
    axes = fig.subplots(nrow, ncol, sharey=True, squeeze=False).ravel()
    alphas = palette.alpha_colors(runs["alpha"])
    styles = palette.reptile_styles(zip(runs["k_eff"], runs["eps_eff"], strict=True))
    params = dict(zip(runs["model"], runs["n_params"], strict=True))
    for ax, model in zip(axes, models, strict=False):
        in_panel = runs[runs["model"] == model]
        curves = over_seeds(ev[ev["run_id"].isin(in_panel["run_id"])], [*CONFIG, "step"], ["tokens_new", MEAN])
        for (_, alpha, k, eps), c in in_run_order(curves, in_panel):
            color, style = alphas[float(alpha)], styles[(k, eps)]
            line_with_band(ax, c["tokens_new"], c[MEAN], c[f"{MEAN}_std"], c["n"], color=color,
                           ls=style["linestyle"], label=group_label(alpha, k, eps))
            ax.plot(c["tokens_new"].iloc[-1], c[MEAN].iloc[-1], color=color, marker=style["marker"], ms=4, ls="")
        ax.axhline(0.0, color="0.5", ls=":", lw=0.9)
        ax.set_title(f"{model} ({fmt_params(params[model])})", fontsize=9)
        ax.set_xlabel("new-data tokens trained", fontsize=9)
        ax.xaxis.set_major_formatter(EngFormatter(sep=""))  # 1.5M, not 1500000 (as the task_losses figure)
        ax.xaxis.set_major_locator(MaxNLocator(nbins=5))
        ax.tick_params(labelsize=TICK_FONT)
        if ax.get_subplotspec().is_first_col():
            ax.set_ylabel("mean cosine, current vs earlier tasks", fontsize=9)
    for ax in axes[len(models):]:
        ax.set_visible(False)
    legend(fig, axes, fontsize=7, loc="outside right upper")
    suptitle(fig, f"Gradient alignment over training ({SPREAD}; marker: end of training; dotted: orthogonal)")
    return fig


def add_alignment(rep) -> None:
    """Add the alignment table, figure and report section to a report (`analysis.report_contents.Report`) when
    any usable run has alignment records; nothing otherwise."""
    from analysis import tables
    from analysis.figure_style import save

    usable, evals = rep.usable, rep.collection.evals
    if usable.empty or evals.empty:
        return
    evals = evals[evals["run_id"].isin(usable["run_id"])]
    with_records = set(measured(evals)["run_id"])
    if not with_records:
        return
    table = alignment_table(usable, evals)
    tdir = rep.out / "tables"
    tdir.mkdir(parents=True, exist_ok=True)
    (tdir / f"{TABLE}.md").write_text(tables.to_markdown(table), encoding="utf-8")
    (tdir / f"{TABLE}.tex").write_text(tables.to_latex(table, caption=CAPTION, label=f"tab:{TABLE}"), encoding="utf-8")
    rep.files += [tdir / f"{TABLE}.md", tdir / f"{TABLE}.tex"]
    lines = ["", "## Gradient alignment", "",
             "Cosine similarity between the gradient of the task being trained and that of each earlier task, on fixed "
             "held-out windows at every evaluation (`eval.grad_alignment=true`, `mer.evaluation.grad_alignment`); positive: a "
             "step on the current task also lowers the earlier tasks' losses (to first order), negative: it raises them. "
             f"{CAPTION}.", "", tables.to_markdown(table), f"LaTeX: [tables/{TABLE}.tex](tables/{TABLE}.tex); every "
             "evaluation: the `grad_cosine_mean` and `grad_cosine.<task>` columns of `data/evals.csv`.", ""]
    fig = plot_alignment(evals, usable)
    if fig is not None:
        rep.files += save(fig, rep.out / "figures", FIGURE)
        lines += [f"![{FIGURE}](figures/{FIGURE}.png)", "",
                  "Mean cosine over new-data tokens, one panel per model: colour = replay rate, line style = Reptile "
                  "setting; mean over seeds with a band of ± 1 sample std.", ""]
    without = [r for r in usable["run_id"] if r not in with_records]
    if without:
        more = f" and {len(without) - 12} more" if len(without) > 12 else ""
        shown = ", ".join(f"`{r}`" for r in without[:12]) + more
        lines += [f"{len(without)} usable run(s) have no alignment records (trained without eval.grad_alignment=true) "
                  f"and are not in this table or figure: {shown}.", ""]
    with (rep.out / "report.md").open("a", encoding="utf-8") as fh:
        fh.write("\n".join(lines))


def _fmt_count(values: pd.Series) -> str:
    lo, hi = int(values.min()), int(values.max())
    return str(lo) if lo == hi else f"{lo}-{hi}"
