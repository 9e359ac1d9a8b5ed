"""The report's figures, drawn on matplotlib `Figure` objects (no pyplot state, any backend).

Each function takes the tidy tables (and fits) and returns a Figure, or None when the data cannot
support that figure (the caller says why). `save` writes PNG and PDF. Colours come from
`analysis.palette`: sequential by model size, distinct by replay rate, Reptile by marker/line.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import EngFormatter, FuncFormatter

from analysis import palette
from analysis.families import METRIC_WORDS, X_COL, FamilyFit, add_setting_columns, no_replay_runs

MAX_PANELS = 16
_PLAIN = FuncFormatter(lambda v, _pos: f"{v:g}")  # log-scaled loss axes read better as 3, 4, 6 than 10^0.5
FLOPS_LABEL = "training FLOPs (new + replay + Reptile)"
PER_TOKEN_LABEL = "training FLOPs per new-data token"
LOSS_LABEL = "validation loss (nats/token)"


def save(fig: Figure, out_dir: Path, name: str) -> list[Path]:
    """Write `name`.png (150 dpi) and `name`.pdf into `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{name}.png", out_dir / f"{name}.pdf"]
    fig.savefig(paths[0], dpi=150, bbox_inches="tight")
    fig.savefig(paths[1], bbox_inches="tight")
    return paths


def _settings_order(runs: pd.DataFrame) -> list[str]:
    """Settings sorted by model size, then alpha, then Reptile (k, eps)."""
    r = add_setting_columns(runs)
    r = r.assign(_n=r["n_params"].fillna(0)).sort_values(["_n", "model", "alpha", "k_eff", "eps_eff"])
    return list(dict.fromkeys(r["setting"]))


def plot_task_losses(evals: pd.DataFrame, runs: pd.DataFrame, tasks: list[str]) -> tuple[Figure | None, int]:
    """Per-task validation loss over new tokens, one panel per setting (mean over seeds).

    Dotted vertical lines mark task boundaries. Returns the figure and the number of settings
    left out because of the panel limit.
    """
    if evals.empty or runs.empty:
        return None, 0
    runs = add_setting_columns(runs)
    order = _settings_order(runs)
    shown, dropped = order[:MAX_PANELS], max(0, len(order) - MAX_PANELS)
    ev = evals.merge(runs[["run_id", "setting"]], on="run_id")
    ncol = min(4, len(shown))
    nrow = math.ceil(len(shown) / ncol)
    fig = Figure(figsize=(3.6 * ncol, 2.8 * nrow), layout="constrained")
    axes = np.atleast_1d(fig.subplots(nrow, ncol, sharex=False, sharey=True, squeeze=False)).ravel()
    colors = palette.task_colors(tasks)
    for ax, setting in zip(axes, shown, strict=False):
        sub = ev[ev["setting"] == setting]
        mean = sub.groupby("step").mean(numeric_only=True).sort_index()
        x = mean["tokens_new"]
        for t in tasks:
            ax.plot(x, mean[f"val_loss.{t}"], color=colors[t], label=t, lw=1.4)
        for xb in sub.loc[sub["boundary"], "tokens_new"].unique():
            ax.axvline(xb, color="0.5", ls=":", lw=0.9)
        n_seeds = sub["run_id"].nunique()
        ax.set_title(f"{setting}\n({n_seeds} seed{'s' if n_seeds > 1 else ''})", fontsize=8)
        ax.set_xlabel("new-data tokens trained")
        # 1.5M instead of 1500000: long plain tick labels run into each other at column width.
        ax.xaxis.set_major_formatter(EngFormatter(sep=""))
        ax.set_ylabel(LOSS_LABEL)
    for ax in axes[len(shown):]:
        ax.set_visible(False)
    axes[0].legend(title="task", fontsize=7, title_fontsize=7)
    fig.suptitle("Per-task validation loss during training (dotted: end of a task)")
    return fig, dropped


def plot_loss_vs_flops(evals: pd.DataFrame, runs: pd.DataFrame, total_fit: FamilyFit | None) -> Figure | None:
    """Mean validation loss over all tasks vs training FLOPs, log-log.

    Left: no-replay runs coloured by model size. Right: replay/Reptile runs coloured by alpha
    (dashed = Reptile). A run's line ends at its retained loss (the mean over tasks after the last
    task); the grey curve and band are the no-replay fit of retained loss vs total training FLOPs.
    """
    if evals.empty or runs.empty:
        return None
    runs = add_setting_columns(runs)
    nr_ids = set(no_replay_runs(runs)["run_id"])
    fig = Figure(figsize=(11, 4.2), layout="constrained")
    ax_size, ax_alpha = fig.subplots(1, 2, sharey=True)
    sizes = palette.size_colors(runs["n_params"].fillna(0))
    alphas = palette.alpha_colors(runs["alpha"])
    for run_id, ev in evals[evals["run_id"].isin(runs["run_id"])].groupby("run_id", sort=False):
        r = runs[runs["run_id"] == run_id].iloc[0]
        ev = ev[ev["flops_train"] > 0].sort_values("step")
        if ev.empty:
            continue
        if run_id in nr_ids:
            ax, color, style = ax_size, sizes[float(np.nan_to_num(r["n_params"]))], palette.REPTILE_STYLE[False]
        else:
            ax, color, style = ax_alpha, alphas[float(r["alpha"])], palette.REPTILE_STYLE[bool(r["reptile"])]
        ax.plot(ev["flops_train"], ev["val_loss_mean"], color=color, lw=0.9, alpha=0.8, ls=style["linestyle"])
        ax.plot(ev["flops_train"].iloc[-1], ev["val_loss_mean"].iloc[-1], color=color, marker=style["marker"], ms=4)
    for ax in (ax_size, ax_alpha):
        if total_fit is not None and total_fit.fit.converged:
            _draw_fit(ax, total_fit, color=palette.FIT, label="no-replay fit (retained loss)")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(_PLAIN)
        ax.yaxis.set_minor_formatter(_PLAIN)
        ax.set_xlabel(FLOPS_LABEL)
    ax_size.set_ylabel("mean validation loss over all tasks (nats/token)")
    ax_size.set_title("no replay, by model size")
    ax_alpha.set_title("replay / Reptile, by replay rate")
    size_names = runs.drop_duplicates("n_params").sort_values("n_params")
    ax_size.legend(
        handles=[Line2D([], [], color=sizes[float(np.nan_to_num(n))], label=f"{m} ({_fmt_params(n)})") for m, n in zip(size_names["model"], size_names["n_params"], strict=True)]
        + [Line2D([], [], color=palette.FIT, label="fit of retained loss")],
        fontsize=7,
    )
    ax_alpha.legend(handles=_alpha_handles(runs, alphas), fontsize=7)
    return fig


def plot_stability_plasticity(runs: pd.DataFrame, fits: list[FamilyFit]) -> Figure | None:
    """Retained (stability) and learned (plasticity) loss vs FLOPs per new token, with family fits and bands."""
    if runs.empty:
        return None
    runs = add_setting_columns(runs)
    nr_ids = set(no_replay_runs(runs)["run_id"])
    fig = Figure(figsize=(11, 4.2), layout="constrained")
    axes = fig.subplots(1, 2)
    sizes = palette.size_colors(runs["n_params"].fillna(0))
    alphas = palette.alpha_colors(runs["alpha"])
    replay_fit_drawn = False
    for ax, metric in zip(axes, ("retained_loss", "learned_loss"), strict=True):
        for _, r in runs.iterrows():
            if r["run_id"] in nr_ids:
                ax.scatter(r[X_COL], r[metric], color=sizes[float(np.nan_to_num(r["n_params"]))], marker="D", s=22, zorder=3)
            else:
                ax.scatter(r[X_COL], r[metric], color=alphas[float(r["alpha"])], marker=palette.REPTILE_STYLE[bool(r["reptile"])]["marker"],
                           s=18, zorder=3, edgecolor="white", linewidth=0.4)
        drawn = [ff for ff in fits if ff.metric == metric and ff.fit.converged]
        for ff in drawn:
            is_nr = ff.family.startswith("no replay")
            _draw_fit(ax, ff, color=palette.FIT if is_nr else "0.6", ls="-" if is_nr else "--", label=ff.family, band=is_nr)
        replay_fit_drawn = replay_fit_drawn or any(not ff.family.startswith("no replay") for ff in drawn)
        ax.set_xscale("log")
        ax.set_xlabel(PER_TOKEN_LABEL)
        ax.set_ylabel(f"{METRIC_WORDS[metric]} (nats/token)")
        ax.set_title("stability: retained loss after the last task" if metric == "retained_loss" else "plasticity: loss right after each task")
    handles = [Line2D([], [], color=palette.FIT, label="no-replay fit (95% band)")]
    if replay_fit_drawn:
        handles.append(Line2D([], [], color="0.6", ls="--", label="replay-family fit"))
    handles.append(Line2D([], [], color="0.3", marker="D", ls="", label="no replay (colour: model size)"))
    axes[0].legend(handles=handles + _alpha_handles(runs[~runs["run_id"].isin(nr_ids)], alphas), fontsize=7)
    return fig


def plot_forgetting_heatmap(runs: pd.DataFrame, column: str) -> Figure | None:
    """Mean forgetting over alpha x `column` ('k_eff' or 'eps_eff'), one panel per model.

    Averages over seeds and over the other Reptile knob; None when no model has at least two
    values on both axes.
    """
    if runs.empty:
        return None
    runs = add_setting_columns(runs)
    models = [m for m, g in runs.groupby("model", sort=True) if g["alpha"].nunique() >= 2 and g[column].nunique() >= 2]
    if not models:
        return None
    fig = Figure(figsize=(4.2 * len(models), 3.6), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(models), squeeze=False)).ravel()
    label = {"k_eff": "Reptile interval k (0 = off)", "eps_eff": "Reptile step eps (1 = off)"}[column]
    other = "eps_eff" if column == "k_eff" else "k_eff"
    for ax, model in zip(axes, models, strict=True):
        table = runs[runs["model"] == model].pivot_table(index="alpha", columns=column, values="forgetting", aggfunc="mean")
        sns.heatmap(table, ax=ax, annot=True, fmt=".3f", cmap="rocket_r", cbar_kws={"label": "forgetting (nats/token)"})
        ax.set_xlabel(label)
        ax.set_ylabel("replay rate alpha")
        ax.set_title(f"{model}: forgetting (mean over seeds and {other.split('_')[0]})", fontsize=9)
    return fig


def _draw_fit(ax, ff: FamilyFit, *, color, label: str, ls: str = "-", band: bool = True) -> None:
    lo, hi = ff.fit.ranges["C"]
    grid = np.geomspace(lo / 1.5, hi * 1.5, 200)
    ax.plot(grid, ff.fit.predict(grid), color=color, ls=ls, lw=1.5, label=label, zorder=2)
    if band and ff.boot is not None and ff.boot.ok.shape[0] > 1:
        blo, bhi = ff.boot.band(grid)
        ax.fill_between(grid, blo, bhi, color=color, alpha=0.18, lw=0, zorder=1)


def _alpha_handles(runs: pd.DataFrame, alphas: dict[float, str]) -> list[Line2D]:
    handles = [Line2D([], [], color=alphas[a], marker="o", label=f"alpha={a:g}") for a in sorted(runs["alpha"].unique())]
    if runs["reptile"].astype(bool).any():
        handles.append(Line2D([], [], color="0.3", marker="s", ls="--", label="with Reptile"))
    return handles


def _fmt_params(n: float) -> str:
    if not np.isfinite(n) or n <= 0:
        return "size unknown"
    for unit, div in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= div:
            return f"{n / div:.3g}{unit} params"
    return f"{n:.0f} params"
