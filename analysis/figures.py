"""The report's figures, drawn on matplotlib `Figure` objects (no pyplot state, any backend).

Each function takes the tidy tables (and fits) and returns a Figure, or None when the data cannot
support that figure (the caller says why). `save` writes PNG and PDF.

Every figure keeps the same conventions, so a reader learns them once:

- a configuration (model, alpha, Reptile k and eps) is never pooled with another one. Its seeds give
  a point at their mean with an error bar of ± one sample standard deviation, or a line at their
  mean with a band of ± one sample std; a configuration with one seed gets its point or line alone;
- colour encodes one thing per panel (`analysis.palette`): model size only in the panel about model
  size (with a key naming each model and its parameter count), replay rate alpha elsewhere, tasks in
  the per-task curves; the Reptile setting is marker and line style;
- legends are built from the drawn artists (the first artist of each group carries the label), so
  nothing absent from the axes (e.g. a fit that failed) gets an entry;
- log axes label a few major ticks (powers of ten, else 1-2-5 steps) and never their minor ticks.

This module holds the report's four figures; what they share lives apart, one job a module:
`analysis.figure_data` (configurations in order, averaged over seeds), `analysis.figure_marks`
(mean lines and points with their seed spread, fitted curves), `analysis.figure_style` (labels,
legend, title, `save`) and `analysis.log_axes` (log ticks and their labels). `save`,
`reptile_label` and `SEED_SPREAD_GID` are re-exported here for the report and its callers.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.ticker import EngFormatter, MaxNLocator

from analysis import palette
from analysis.families import METRIC_WORDS, NO_REPLAY, X_COL, FamilyFit, no_replay_runs
from analysis.figure_data import CONFIG, evals_with_config, in_run_order, ordered_runs, over_seeds
from analysis.figure_marks import SEED_SPREAD_GID, draw_fit, line_with_band, mean_point
from analysis.figure_style import (
    FLOPS_LABEL,
    LOSS_LABEL,
    PER_TOKEN_LABEL,
    SPREAD,
    TICK_FONT,
    fmt_params,
    group_label,
    legend,
    reptile_label,
    save,
    suptitle,
)
from analysis.log_axes import log_axis, plain, sci

__all__ = ["MAX_PANELS", "SEED_SPREAD_GID", "plot_forgetting_heatmap", "plot_loss_vs_flops", "plot_stability_plasticity",
           "plot_task_losses", "reptile_label", "save"]

MAX_PANELS = 16

# The names the axis helpers had when they lived here (tests/analysis/test_analysis_figures.py draws with them).
_log_axis, _sci, _plain = log_axis, sci, plain


def plot_task_losses(evals: pd.DataFrame, runs: pd.DataFrame, tasks: list[str]) -> tuple[Figure | None, int]:
    """Per-task validation loss over new-data tokens, one panel per configuration, one colour per task.

    Each line is the mean over the configuration's seeds with a band of ± one sample std; dotted
    vertical lines mark task boundaries. Returns (the figure, or None without evaluations or runs;
    the number of configurations left out because of `MAX_PANELS`).
    """
    if evals.empty or runs.empty:
        return None, 0
    runs = ordered_runs(runs)
    settings = list(dict.fromkeys(runs["setting"]))
    shown, dropped = settings[:MAX_PANELS], max(0, len(settings) - MAX_PANELS)
    ev = evals_with_config(evals, runs)
    ncol = min(4, len(shown))
    nrow = math.ceil(len(shown) / ncol)
    fig = Figure(figsize=(3.0 * ncol + 1.0, 2.5 * nrow + 0.6), layout="constrained")
    axes = fig.subplots(nrow, ncol, sharey=True, squeeze=False).ravel()
    colors = palette.task_colors(tasks)
    for ax, setting in zip(axes, shown, strict=False):
        sub = ev[ev["setting"] == setting]
        curves = over_seeds(sub, ["step"], ["tokens_new", *(f"val_loss.{t}" for t in tasks)])
        for t in tasks:
            col = f"val_loss.{t}"
            line_with_band(ax, curves["tokens_new"], curves[col], curves[f"{col}_std"], curves["n"], color=colors[t], ls="-", label=t)
        for xb in sub.loc[sub["boundary"], "tokens_new"].unique():
            ax.axvline(xb, color="0.5", ls=":", lw=0.9)
        n_seeds = sub["run_id"].nunique()
        ax.set_title(f"{setting}\n({n_seeds} seed{'s' if n_seeds > 1 else ''})", fontsize=8)
        # 1.5M instead of 1500000: long plain tick labels run into each other at column width.
        ax.xaxis.set_major_formatter(EngFormatter(sep=""))
        ax.xaxis.set_major_locator(MaxNLocator(nbins=4))
        ax.tick_params(labelsize=TICK_FONT)
        ax.set_xlabel("new-data tokens trained", fontsize=8)  # on every panel: each has its own x range
    for ax in axes[len(shown):]:
        ax.set_visible(False)
    fig.supylabel(LOSS_LABEL, fontsize=9)
    legend(fig, axes, title="task", loc="outside lower center", ncols=len(tasks), fontsize=8, title_fontsize=8)
    suptitle(fig, f"Per-task validation loss during training ({SPREAD}; dotted: end of a task)")
    return fig, dropped


def plot_loss_vs_flops(evals: pd.DataFrame, runs: pd.DataFrame, total_fit: FamilyFit | None) -> Figure | None:
    """Mean validation loss over all tasks vs training FLOPs, log-log, one line per configuration.

    First panel (when there are no-replay runs): the no-replay runs (alpha = 0, Reptile off), coloured
    by model size, with a key of model names and parameter counts. Then one panel per model that has
    replay or Reptile runs: all that model's runs coloured by alpha (black: its no-replay runs), the
    Reptile setting as line style and marker. A line is the mean over seeds at each evaluation with a
    band of ± one sample std; its marker is the end of training (the retained loss). The grey curve is
    `total_fit` (the no-replay fit of retained loss vs total training FLOPs, with its 95% bootstrap
    band), drawn only when it converged and, in a model's panel, only over that panel's FLOPs range.
    Returns None without evaluations or runs.
    """
    if evals.empty or runs.empty:
        return None
    runs = ordered_runs(runs)
    ev = evals_with_config(evals, runs)
    ev = ev[ev["flops_train"] > 0]  # the first evaluation, before any training, has no place on a log axis
    if ev.empty:
        return None
    nr_ids = set(no_replay_runs(runs)["run_id"])
    panels = {"no replay": runs[runs["run_id"].isin(nr_ids)]} if nr_ids else {}
    for model in dict.fromkeys(runs.loc[~runs["run_id"].isin(nr_ids), "model"]):
        panels[model] = runs[runs["model"] == model]
    ncol = min(3, len(panels))
    nrow = math.ceil(len(panels) / ncol)
    fig = Figure(figsize=(5.4 * ncol, 3.4 * nrow + 0.4), layout="constrained")
    axes = fig.subplots(nrow, ncol, sharey=True, squeeze=False).ravel()
    sizes = palette.size_colors(runs["n_params"].fillna(0))
    alphas = palette.alpha_colors(runs["alpha"])
    styles = palette.reptile_styles(zip(runs["k_eff"], runs["eps_eff"], strict=True))
    params = dict(zip(runs["model"], runs["n_params"], strict=True))
    for ax, (panel, in_panel) in zip(axes, panels.items(), strict=False):
        by_size = panel == "no replay"
        curves = over_seeds(ev[ev["run_id"].isin(in_panel["run_id"])], [*CONFIG, "step"], ["flops_train", "val_loss_mean"])
        for (model, alpha, k, eps), c in in_run_order(curves, in_panel):
            if by_size:
                color, style, label = sizes[float(np.nan_to_num(params[model]))], styles[palette.REPTILE_OFF], f"{model} ({fmt_params(params[model])})"
            else:
                color, style, label = alphas[float(alpha)], styles[(k, eps)], group_label(alpha, k, eps)
            line_with_band(ax, c["flops_train"], c["val_loss_mean"], c["val_loss_mean_std"], c["n"], color=color, ls=style["linestyle"], label=label)
            ax.plot(c["flops_train"].iloc[-1], c["val_loss_mean"].iloc[-1], color=color, marker=style["marker"], ms=4, ls="")
        if total_fit is not None:
            draw_fit(ax, total_fit, color=palette.FIT, ls="-", label="no-replay fit of retained loss", band=True,
                      within=None if by_size else tuple(ax.dataLim.intervalx))
        log_axis(ax, "x", sci)
        log_axis(ax, "y", plain)
        ax.set_xlabel(FLOPS_LABEL, fontsize=9)
        ax.set_title("no replay: one line per model size" if by_size else f"{panel} ({fmt_params(params[panel])}): by replay rate", fontsize=9)
        if ax.get_subplotspec().is_first_col():
            ax.set_ylabel("mean validation loss over all tasks (nats/token)", fontsize=9)
        # Beside its panel: the key of that panel's colours (model size, or alpha and Reptile setting).
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0)
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    suptitle(fig, f"Loss over training ({SPREAD}; marker: end of training)")
    return fig


def plot_stability_plasticity(runs: pd.DataFrame, fits: list[FamilyFit]) -> Figure | None:
    """Retained (stability) and learned (plasticity) loss vs FLOPs per new token, one point per configuration.

    A point is the mean over seeds with an error bar of ± one sample std (none for one seed);
    colour = alpha (black: alpha = 0, which includes the no-replay runs, one per model size),
    marker = Reptile setting. Converged fits in `fits` are drawn: the no-replay family solid with its
    95% bootstrap band, replay families grey in their Reptile setting's line style. Returns None
    without runs.
    """
    if runs.empty:
        return None
    runs = ordered_runs(runs)
    points = over_seeds(runs, CONFIG, [X_COL, "retained_loss", "learned_loss"])
    fig = Figure(figsize=(9.5, 4.8), layout="constrained")
    axes = fig.subplots(1, 2)
    alphas = palette.alpha_colors(runs["alpha"])
    styles = palette.reptile_styles(zip(runs["k_eff"], runs["eps_eff"], strict=True))
    for ax, metric in zip(axes, ("retained_loss", "learned_loss"), strict=True):
        seen: set[str] = set()
        for (_, alpha, k, eps), p in in_run_order(points, runs):
            p = p.iloc[0]
            label = _first(seen, group_label(alpha, k, eps))
            mean_point(ax, p[X_COL], p[metric], p[f"{metric}_std"], p["n"], color=alphas[float(alpha)], marker=styles[(k, eps)]["marker"], label=label)
        for ff in fits:
            if ff.metric != metric or ff.x_col != X_COL:  # a fit against another x has no place on this axis
                continue
            if ff.family.startswith(NO_REPLAY):
                draw_fit(ax, ff, color=palette.FIT, ls="-", label="no-replay fit", band=True)
            else:
                fam = runs[runs["run_id"].isin(ff.points["run_id"])].iloc[0]
                draw_fit(ax, ff, color=palette.REPLAY_FIT, ls=styles[(fam["k_eff"], fam["eps_eff"])]["linestyle"],
                          label=f"fit: {ff.family}", band=False)
        log_axis(ax, "x", sci)
        ax.tick_params(labelsize=TICK_FONT)
        ax.set_xlabel(PER_TOKEN_LABEL, fontsize=9)
        ax.set_ylabel(f"{METRIC_WORDS[metric]} (nats/token)", fontsize=9)
        ax.set_title("stability: retained loss after the last task" if metric == "retained_loss" else "plasticity: loss right after each task", fontsize=9)
    legend(fig, axes, fontsize=7, loc="outside lower center", ncols=3)
    suptitle(fig, f"Stability and plasticity ({SPREAD}); alpha=0 with Reptile off: the no-replay runs, one per model size")
    return fig


def plot_forgetting_heatmap(runs: pd.DataFrame) -> Figure | None:
    """Forgetting by replay rate alpha (rows) and Reptile setting (columns), one panel per model.

    Columns are "off" and then one per distinct (k, eps) pair in (k, eps) order, never pooled. A cell
    holds the mean over seeds with ± one sample std (the mean alone for one seed), plus "n=" seeds
    when the panel's cells have different numbers of seeds; all panels share one colour scale.
    A model gets a panel when it has at least two alphas or two Reptile settings. Returns None when
    no model has.
    """
    runs = ordered_runs(runs[runs["forgetting"].notna()]) if not runs.empty else runs
    if runs.empty:
        return None
    models = [m for m, g in runs.groupby("model", sort=False)
              if g["alpha"].nunique() >= 2 or g[["k_eff", "eps_eff"]].drop_duplicates().shape[0] >= 2]
    if not models:
        return None
    cells = over_seeds(runs[runs["model"].isin(models)], CONFIG, ["forgetting"])
    vmin, vmax = cells["forgetting"].min(), cells["forgetting"].max()
    widths = [cells[cells["model"] == m][["k_eff", "eps_eff"]].drop_duplicates().shape[0] for m in models]
    rows = max(cells[cells["model"] == m]["alpha"].nunique() for m in models)
    fig = Figure(figsize=(sum(0.95 * w + 1.0 for w in widths) + 1.0, 0.5 * rows + 1.5), layout="constrained")
    axes = fig.subplots(1, len(models), squeeze=False, width_ratios=widths).ravel()
    params = dict(zip(runs["model"], runs["n_params"], strict=True))
    empty = False
    for ax, model in zip(axes, models, strict=True):
        c = cells[cells["model"] == model]
        show_n = c["n"].nunique() > 1
        c = c.assign(text=[_cell_text(m, s, n, show_n) for m, s, n in zip(c["forgetting"], c["forgetting_std"], c["n"], strict=True)])
        mean = c.pivot(index="alpha", columns=["k_eff", "eps_eff"], values="forgetting").sort_index(axis=1)
        text = c.pivot(index="alpha", columns=["k_eff", "eps_eff"], values="text").reindex_like(mean).fillna("")
        mean.columns = [reptile_label(k, e) for k, e in mean.columns]
        mean.index = [f"{a:g}" for a in mean.index]
        sns.heatmap(mean, ax=ax, annot=text.to_numpy(), fmt="", cmap=palette.FORGETTING_CMAP, vmin=vmin, vmax=vmax, cbar=False,
                    annot_kws={"fontsize": 7}, linewidths=0.5, linecolor="white", xticklabels=True, yticklabels=True)
        empty = empty or bool(mean.isna().to_numpy().any())
        ax.set_xlabel("Reptile setting", fontsize=9)
        ax.set_ylabel("replay rate alpha", fontsize=9)
        ax.tick_params(labelsize=TICK_FONT, rotation=0)
        ax.set_title(f"{model} ({fmt_params(params[model])})", fontsize=9)
    fig.colorbar(axes[-1].collections[0], ax=list(axes), label="forgetting (nats/token)", shrink=0.9)
    suptitle(fig, f"Forgetting ({SPREAD}{'; blank: not run' if empty else ''})")
    return fig


def _first(seen: set[str], label: str) -> str:
    """`label` the first time it is asked for, then a label legends ignore (one entry per group)."""
    if label in seen:
        return "_nolegend_"
    seen.add(label)
    return label


def _cell_text(mean: float, std: float, n: int, show_n: bool) -> str:
    """'0.123\\n± 0.004' (the mean alone for one seed), with '\\nn=2' appended when `show_n`."""
    text = f"{mean:.3f}" + (f"\n± {std:.3f}" if n > 1 else "")
    return text + (f"\nn={n}" if show_n else "")
