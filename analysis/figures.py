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
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import EngFormatter, FuncFormatter, LogLocator, MaxNLocator, NullFormatter

from analysis import palette
from analysis.families import METRIC_WORDS, NO_REPLAY, X_COL, FamilyFit, add_setting_columns, no_replay_runs

MAX_PANELS = 16
FLOPS_LABEL = "training FLOPs (new + replay + Reptile)"
PER_TOKEN_LABEL = "training FLOPs per new-data token"
LOSS_LABEL = "validation loss (nats/token)"
SPREAD = "mean ± 1 sample std over seeds"
SEED_SPREAD_GID = "seed-spread"
"""gid of every band over seeds, which tells them apart from a fit's bootstrap band."""
CONFIG = ["model", "alpha", "k_eff", "eps_eff"]
"""Columns that identify a configuration; its runs differ only in the seed."""
TICK_FONT = 8


def save(fig: Figure, out_dir: Path, name: str, dpi: int = 150) -> list[Path]:
    """Write `name`.png (at `dpi`) and `name`.pdf into `out_dir`; returns the two paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{name}.png", out_dir / f"{name}.pdf"]
    fig.savefig(paths[0], dpi=dpi, bbox_inches="tight")
    fig.savefig(paths[1], bbox_inches="tight")
    return paths


def reptile_label(k: int, eps: float) -> str:
    """'off', or 'k=16 eps=0.1': a Reptile setting as legends and heatmap columns name it."""
    return "off" if (k, eps) == palette.REPTILE_OFF else f"k={k} eps={eps:g}"


def plot_task_losses(evals: pd.DataFrame, runs: pd.DataFrame, tasks: list[str]) -> tuple[Figure | None, int]:
    """Per-task validation loss over new-data tokens, one panel per configuration, one colour per task.

    Each line is the mean over the configuration's seeds with a band of ± one sample std; dotted
    vertical lines mark task boundaries. Returns (the figure, or None without evaluations or runs;
    the number of configurations left out because of `MAX_PANELS`).
    """
    if evals.empty or runs.empty:
        return None, 0
    runs = _ordered(runs)
    settings = list(dict.fromkeys(runs["setting"]))
    shown, dropped = settings[:MAX_PANELS], max(0, len(settings) - MAX_PANELS)
    ev = _with_config(evals, runs)
    ncol = min(4, len(shown))
    nrow = math.ceil(len(shown) / ncol)
    fig = Figure(figsize=(3.0 * ncol + 1.0, 2.5 * nrow + 0.6), layout="constrained")
    axes = fig.subplots(nrow, ncol, sharey=True, squeeze=False).ravel()
    colors = palette.task_colors(tasks)
    for ax, setting in zip(axes, shown, strict=False):
        sub = ev[ev["setting"] == setting]
        curves = _over_seeds(sub, ["step"], ["tokens_new", *(f"val_loss.{t}" for t in tasks)])
        for t in tasks:
            col = f"val_loss.{t}"
            _line_with_band(ax, curves["tokens_new"], curves[col], curves[f"{col}_std"], curves["n"], color=colors[t], ls="-", label=t)
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
    _legend(fig, axes, title="task", loc="outside lower center", ncols=len(tasks), fontsize=8, title_fontsize=8)
    _suptitle(fig, f"Per-task validation loss during training ({SPREAD}; dotted: end of a task)")
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
    runs = _ordered(runs)
    ev = _with_config(evals, runs)
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
        curves = _over_seeds(ev[ev["run_id"].isin(in_panel["run_id"])], [*CONFIG, "step"], ["flops_train", "val_loss_mean"])
        for (model, alpha, k, eps), c in _in_order(curves, in_panel):
            if by_size:
                color, style, label = sizes[float(np.nan_to_num(params[model]))], styles[palette.REPTILE_OFF], f"{model} ({_fmt_params(params[model])})"
            else:
                color, style, label = alphas[float(alpha)], styles[(k, eps)], _group_label(alpha, k, eps)
            _line_with_band(ax, c["flops_train"], c["val_loss_mean"], c["val_loss_mean_std"], c["n"], color=color, ls=style["linestyle"], label=label)
            ax.plot(c["flops_train"].iloc[-1], c["val_loss_mean"].iloc[-1], color=color, marker=style["marker"], ms=4, ls="")
        if total_fit is not None:
            _draw_fit(ax, total_fit, color=palette.FIT, ls="-", label="no-replay fit of retained loss", band=True,
                      within=None if by_size else tuple(ax.dataLim.intervalx))
        _log_axis(ax, "x", _sci)
        _log_axis(ax, "y", _plain)
        ax.set_xlabel(FLOPS_LABEL, fontsize=9)
        ax.set_title("no replay: one line per model size" if by_size else f"{panel} ({_fmt_params(params[panel])}): by replay rate", fontsize=9)
        if ax.get_subplotspec().is_first_col():
            ax.set_ylabel("mean validation loss over all tasks (nats/token)", fontsize=9)
        # Beside its panel: the key of that panel's colours (model size, or alpha and Reptile setting).
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0)
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    _suptitle(fig, f"Loss over training ({SPREAD}; marker: end of training)")
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
    runs = _ordered(runs)
    points = _over_seeds(runs, CONFIG, [X_COL, "retained_loss", "learned_loss"])
    fig = Figure(figsize=(9.5, 4.8), layout="constrained")
    axes = fig.subplots(1, 2)
    alphas = palette.alpha_colors(runs["alpha"])
    styles = palette.reptile_styles(zip(runs["k_eff"], runs["eps_eff"], strict=True))
    for ax, metric in zip(axes, ("retained_loss", "learned_loss"), strict=True):
        seen: set[str] = set()
        for (_, alpha, k, eps), p in _in_order(points, runs):
            p = p.iloc[0]
            label = _first(seen, _group_label(alpha, k, eps))
            _point(ax, p[X_COL], p[metric], p[f"{metric}_std"], p["n"], color=alphas[float(alpha)], marker=styles[(k, eps)]["marker"], label=label)
        for ff in fits:
            if ff.metric != metric or ff.x_col != X_COL:  # a fit against another x has no place on this axis
                continue
            if ff.family.startswith(NO_REPLAY):
                _draw_fit(ax, ff, color=palette.FIT, ls="-", label="no-replay fit", band=True)
            else:
                fam = runs[runs["run_id"].isin(ff.points["run_id"])].iloc[0]
                _draw_fit(ax, ff, color=palette.REPLAY_FIT, ls=styles[(fam["k_eff"], fam["eps_eff"])]["linestyle"],
                          label=f"fit: {ff.family}", band=False)
        _log_axis(ax, "x", _sci)
        ax.tick_params(labelsize=TICK_FONT)
        ax.set_xlabel(PER_TOKEN_LABEL, fontsize=9)
        ax.set_ylabel(f"{METRIC_WORDS[metric]} (nats/token)", fontsize=9)
        ax.set_title("stability: retained loss after the last task" if metric == "retained_loss" else "plasticity: loss right after each task", fontsize=9)
    _legend(fig, axes, fontsize=7, loc="outside lower center", ncols=3)
    _suptitle(fig, f"Stability and plasticity ({SPREAD}); alpha=0 with Reptile off: the no-replay runs, one per model size")
    return fig


def plot_forgetting_heatmap(runs: pd.DataFrame) -> Figure | None:
    """Forgetting by replay rate alpha (rows) and Reptile setting (columns), one panel per model.

    Columns are "off" and then one per distinct (k, eps) pair in (k, eps) order, never pooled. A cell
    holds the mean over seeds with ± one sample std (the mean alone for one seed), plus "n=" seeds
    when the panel's cells have different numbers of seeds; all panels share one colour scale.
    A model gets a panel when it has at least two alphas or two Reptile settings. Returns None when
    no model has.
    """
    runs = _ordered(runs[runs["forgetting"].notna()]) if not runs.empty else runs
    if runs.empty:
        return None
    models = [m for m, g in runs.groupby("model", sort=False)
              if g["alpha"].nunique() >= 2 or g[["k_eff", "eps_eff"]].drop_duplicates().shape[0] >= 2]
    if not models:
        return None
    cells = _over_seeds(runs[runs["model"].isin(models)], CONFIG, ["forgetting"])
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
        ax.set_title(f"{model} ({_fmt_params(params[model])})", fontsize=9)
    fig.colorbar(axes[-1].collections[0], ax=list(axes), label="forgetting (nats/token)", shrink=0.9)
    _suptitle(fig, f"Forgetting ({SPREAD}{'; blank: not run' if empty else ''})")
    return fig


def _ordered(runs: pd.DataFrame) -> pd.DataFrame:
    """`runs` with setting columns (`add_setting_columns`), sorted by model size, alpha, then Reptile (k, eps)."""
    r = add_setting_columns(runs)
    return r.assign(_n=r["n_params"].fillna(0)).sort_values(["_n", "model", *CONFIG[1:], "seed"]).drop(columns="_n")


def _with_config(evals: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """Evaluations of `runs` with each run's configuration columns and setting label (from `runs`)."""
    cols = [*CONFIG, "setting"]
    return evals.drop(columns=[c for c in cols if c in evals.columns]).merge(runs[["run_id", *cols]], on="run_id")


def _over_seeds(df: pd.DataFrame, keys: list[str], values: list[str]) -> pd.DataFrame:
    """One row per `keys` group, sorted by `keys`: for each column v of `values` its mean `v` and
    sample std `v_std` (NaN for one run), and `n`, the number of runs (seeds) in the group."""
    g = df.groupby(keys, sort=True)
    out = g[values].mean().join(g[values].std(ddof=1).add_suffix("_std"))
    out["n"] = g["run_id"].nunique()
    return out.reset_index()


def _in_order(table: pd.DataFrame, runs: pd.DataFrame) -> Iterator[tuple[tuple, pd.DataFrame]]:
    """(configuration key, its rows of `table`) for each configuration of `runs` that `table` has, in `runs`' order."""
    groups = dict(list(table.groupby(CONFIG, sort=False)))
    for key in dict.fromkeys(runs[CONFIG].itertuples(index=False, name=None)):
        if key in groups:
            yield key, groups[key]


def _line_with_band(ax: Axes, x: pd.Series, mean: pd.Series, std: pd.Series, n: pd.Series, *, color, ls, label: str) -> None:
    """A mean line and, where it averages more than one seed, a band of ± std tagged `SEED_SPREAD_GID`."""
    ax.plot(x, mean, color=color, ls=ls, lw=1.3, label=label)
    spread = (n > 1).to_numpy()
    if spread.any():
        ax.fill_between(x, mean - std, mean + std, where=spread, color=color, alpha=0.2, lw=0, gid=SEED_SPREAD_GID)


def _point(ax: Axes, x: float, y: float, std: float, n: int, *, color, marker: str, label: str) -> None:
    """A configuration's mean as an errorbar container, with a ± std bar only when it has more than one
    seed (a single seed has no spread to show). Containers for all points keep the legend in drawing order."""
    ax.errorbar(x, y, yerr=std if n > 1 else None, ls="", capsize=2, elinewidth=0.9, color=color, marker=marker, ms=5,
                mec="white", mew=0.4, label=label, zorder=3)


def _draw_fit(ax: Axes, ff: FamilyFit, *, color, ls, label: str, band: bool, within: tuple[float, float] | None = None) -> None:
    """Draw a converged fit over its data's x range widened 1.5x each way and cut to `within`.

    Nothing when the fit failed or the range is empty. With `band` and a bootstrap, adds the 95%
    band and says so in the label.
    """
    if not ff.fit.converged:
        return
    lo, hi = ff.fit.ranges["C"]
    lo, hi = lo / 1.5, hi * 1.5
    if within is not None:
        lo, hi = max(lo, within[0]), min(hi, within[1])
    if not lo < hi:
        return
    grid = np.geomspace(lo, hi, 200)
    with_band = band and ff.boot is not None and ff.boot.ok.shape[0] > 1
    ax.plot(grid, ff.fit.predict(grid), color=color, ls=ls, lw=1.5, label=label + (" (95% band)" if with_band else ""), zorder=2)
    if with_band:
        blo, bhi = ff.boot.band(grid)
        ax.fill_between(grid, blo, bhi, color=color, alpha=0.18, lw=0, zorder=1)


def _legend(fig: Figure, axes: Iterable[Axes], **kw) -> None:
    """One figure legend of the labelled artists drawn on `axes`, the first artist of each label."""
    handles: dict[str, object] = {}
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(lab, h)
    if handles:
        fig.legend(list(handles.values()), list(handles), **kw)


def _suptitle(fig: Figure, text: str, fontsize: float = 10) -> None:
    """`text` as the figure's title, wrapped to the figure's width (a narrow figure's title would overhang)."""
    chars = max(30, int(fig.get_figwidth() * 72 / (0.55 * fontsize)))  # an average glyph is about 0.55 em wide
    fig.suptitle(textwrap.fill(text, chars), fontsize=fontsize)


def _first(seen: set[str], label: str) -> str:
    """`label` the first time it is asked for, then a label legends ignore (one entry per group)."""
    if label in seen:
        return "_nolegend_"
    seen.add(label)
    return label


def _group_label(alpha: float, k: int, eps: float) -> str:
    return f"alpha={alpha:g}, Reptile {reptile_label(k, eps)}"


def _cell_text(mean: float, std: float, n: int, show_n: bool) -> str:
    """'0.123\\n± 0.004' (the mean alone for one seed), with '\\nn=2' appended when `show_n`."""
    text = f"{mean:.3f}" + (f"\n± {std:.3f}" if n > 1 else "")
    return text + (f"\nn={n}" if show_n else "")


class _LogTicks(LogLocator):
    """Major ticks of a log axis, few enough to label without overlap.

    Powers of ten (every second or third when more than `max_ticks` are in view); when the view holds
    fewer than two, 1-2-5 steps, or else 1-3 steps, whichever first puts two to `max_ticks` ticks in
    view; else evenly spaced round values.
    matplotlib's default instead labels the minor ticks of a view under a decade ("3x10^10 4x10^10"),
    and those labels run into each other.
    """

    def __init__(self, max_ticks: int):
        super().__init__()
        self.max_ticks = max_ticks

    def __call__(self) -> np.ndarray:
        return self.tick_values(*self.nonsingular(*self.axis.get_view_interval()))

    def tick_values(self, vmin: float, vmax: float) -> np.ndarray:
        """Ticks for the view [vmin, vmax] (both > 0; the axis' `nonsingular` sees to that)."""
        vmin, vmax = sorted((vmin, vmax))
        lo, hi = math.floor(math.log10(vmin)), math.ceil(math.log10(vmax))
        for subs in ((1,), (1, 2, 5), (1, 3)):
            ticks = [m * 10.0**e for e in range(lo, hi + 1) for m in subs if vmin <= m * 10.0**e <= vmax]
            if len(ticks) >= 2 and (subs == (1,) or len(ticks) <= self.max_ticks):
                return np.array(ticks[:: math.ceil(len(ticks) / self.max_ticks)])
        ticks = MaxNLocator(nbins=self.max_ticks, steps=[1, 2, 5, 10]).tick_values(vmin, vmax)
        return ticks[(ticks >= vmin) & (ticks <= vmax)]


def _log_axis(ax: Axes, which: str, formatter) -> None:
    """Log-scale `which` ("x" or "y") of `ax` with `_LogTicks` labelled by `formatter` and unlabelled minor ticks.

    x gets fewer ticks than y: its labels ("2×10^10") are wide, y's (loss: "3") are short.
    """
    getattr(ax, f"set_{which}scale")("log")
    axis = ax.xaxis if which == "x" else ax.yaxis
    axis.set_major_locator(_LogTicks(max_ticks=4 if which == "x" else 6))
    axis.set_major_formatter(FuncFormatter(formatter))
    axis.set_minor_formatter(NullFormatter())
    ax.tick_params(labelsize=TICK_FONT)


def _sci(value: float, _pos=None) -> str:
    """'10^9' for a power of ten, else '2×10^9' or '1.05×10^11' (mathtext): short FLOPs labels."""
    if value <= 0:
        return ""
    exp = math.floor(math.log10(value) + 1e-9)
    mant = value / 10.0**exp
    if abs(mant - 1) < 1e-6:
        return rf"$10^{{{exp}}}$"
    return rf"${mant:.3g}{{\times}}10^{{{exp}}}$"


def _plain(value: float, _pos=None) -> str:
    """3, 4, 6 instead of 10^0.5: log-scaled loss axes read better in plain numbers."""
    return f"{value:g}"


def _fmt_params(n: float) -> str:
    if not np.isfinite(n) or n <= 0:
        return "size unknown"
    for unit, div in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= div:
            return f"{n / div:.3g}{unit} params"
    return f"{n:.0f} params"
