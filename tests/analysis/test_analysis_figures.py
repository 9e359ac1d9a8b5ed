"""The report's figures on synthetic run tables: honest legends, readable ticks, keys, seed spreads.

The tables are built here in the shape `analysis.collect` gives them (no run folders, so it is fast),
with the study's realistic ranges: FLOPs per new token from 1e5 to 1e11, losses of about 2 to 12 nats,
1 to 7 model sizes, 1 or 3 seeds, and a no-replay fit that fails. Every figure of a design is drawn
once (Agg canvas) and shared by the tests. The last test draws a slice of the shared synthetic sweep
as `analysis.collect` reads it.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import matplotlib.image
import numpy as np
import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_rgba
from matplotlib.container import Container, ErrorbarContainer
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from analysis import figures, palette
from analysis.families import METRICS, NO_REPLAY, FamilyFit, fit_family, no_replay_runs, replay_families

TASKS = ["en", "fr", "de"]
ALPHAS = (0.0, 0.25, 0.5)
REPTILE = ((16, 0.1), (64, 0.5))
REPTILE_ALPHAS = (0.0, 0.5)  # Reptile is swept at these alphas only: the heatmap has empty cells, as real sweeps do
STEPS = range(0, 31, 5)  # evaluations; tasks end at steps 10, 20, 30
L0 = 12.0  # loss of a task before it is trained


@dataclass(frozen=True)
class Design:
    n_models: int
    seeds: int
    replay: bool = True
    no_replay_fit: bool | None = None
    """Whether the no-replay fits converge (None: not asserted)."""


DESIGNS = {
    "7 sizes, 3 seeds": Design(7, 3, no_replay_fit=True),
    "1 size, 1 seed, fits fail": Design(1, 1, no_replay_fit=False),
    "2 sizes, 3 seeds, no replay runs, fit fails": Design(2, 3, replay=False, no_replay_fit=False),
}


def synthetic_tables(design: Design) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(runs, evals) with the columns `analysis.collect` writes that the figures read.

    No-replay runs at `n_models` sizes whose FLOPs per new token (6N) span 1e5 to 1e11 (1e8 for one
    size); with `replay`, the middle size also runs every alpha in ALPHAS without Reptile (alpha = 0
    is its no-replay run) and REPTILE_ALPHAS x REPTILE. Learned loss 1.8 + 8 (x/1e5)^-0.3 with 3% noise
    per seed, forgetting up to 20% of it: losses of about 2 to 12 nats.
    """
    rng = np.random.default_rng(10 * design.n_models + design.seeds)
    sizes = np.geomspace(1e5, 1e11, design.n_models) / 6 if design.n_models > 1 else np.array([1e8 / 6])
    configs = [(f"m{i + 1}", float(n), 0.0, 0, 1.0) for i, n in enumerate(sizes)]
    if design.replay:
        model, n = configs[design.n_models // 2][:2]
        configs += [(model, n, a, 0, 1.0) for a in ALPHAS if a > 0]
        configs += [(model, n, a, k, e) for a in REPTILE_ALPHAS for k, e in REPTILE]
    runs, evals = [], []
    for model, n, alpha, k, eps in configs:
        for seed in range(design.seeds):
            per_token = 6 * n / (1 - alpha)
            learned = (1.8 + 8 * (per_token / 1e5) ** -0.3) * math.exp(rng.normal(0, 0.03))
            forgetting = 0.2 * learned * (1 - alpha) * (0.7 if k else 1.0) * math.exp(rng.normal(0, 0.05))
            after = learned * np.array([1.02, 1.0, 0.98])
            end = after + np.array([forgetting, forgetting, 0.0])
            run_id = f"{model}-alpha{alpha}-k{k}-eps{eps}-seed{seed}"
            tokens = np.array(STEPS) * 2**15 * (1 - alpha)
            runs.append({"run_id": run_id, "model": model, "n_params": n, "alpha": alpha, "k": k, "eps": eps, "reptile": k > 0,
                         "seed": seed, "flops_per_new_token": per_token, "final_flops_train": per_token * tokens[-1],
                         "learned_loss": after.mean(), "retained_loss": end.mean(), "forgetting": forgetting})
            for step, tok in zip(STEPS, tokens, strict=True):
                losses = [_task_loss(j, step, after[j], end[j]) for j in range(len(TASKS))]
                evals.append({"run_id": run_id, "step": step, "tokens_new": tok, "flops_train": per_token * tok,
                              "boundary": step in (10, 20, 30), **{f"val_loss.{t}": v for t, v in zip(TASKS, losses, strict=True)},
                              "val_loss_mean": float(np.mean(losses))})
    return pd.DataFrame(runs), pd.DataFrame(evals)


def _task_loss(j: int, step: int, after: float, end: float) -> float:
    """Task j is trained over steps 10j..10j+10: L0 before, down to `after` by its end, then up to `end` at step 30."""
    start, stop = 10 * j, 10 * (j + 1)
    if step <= start:
        return L0
    if step <= stop:
        return L0 + (after - L0) * (step - start) / 10
    return after + (end - after) * (step - stop) / (30 - stop)


def synthetic_fits(runs: pd.DataFrame) -> tuple[list[FamilyFit], FamilyFit]:
    """(the fits against FLOPs per new token, as report.py hands them to the figures; the no-replay fit
    of retained loss against total FLOPs), with a few bootstrap replicates for the bands.

    Of the replay families only the first (Reptile off) is fitted: the others' fits fail slowly here.
    """
    nr = no_replay_runs(runs)
    per_token = [fit_family(NO_REPLAY, nr, m, stratum="model", n_boot=3) for m in METRICS]
    per_token += [fit_family(name, fam, m, stratum="alpha", n_boot=0) for name, fam in list(replay_families(runs).items())[:1] for m in METRICS]
    total = fit_family(NO_REPLAY + ", total FLOPs", nr, "retained_loss", stratum="model", n_boot=3, x_col="final_flops_train")
    return per_token, total


@dataclass
class Drawn:
    """A design's tables and fits, and each of its figures (None when not drawn), already rendered."""

    design: Design
    runs: pd.DataFrame
    evals: pd.DataFrame
    fits: list[FamilyFit]
    total_fit: FamilyFit
    figs: dict[str, Figure | None] = field(default_factory=dict)


def draw_all(runs: pd.DataFrame, evals: pd.DataFrame, fits: list[FamilyFit], total_fit: FamilyFit | None) -> dict[str, Figure | None]:
    """Every figure of the report from these tables, each rendered on an Agg canvas (so extents are final)."""
    figs = {
        "task_losses": figures.plot_task_losses(evals, runs, TASKS)[0],
        "loss_vs_flops": figures.plot_loss_vs_flops(evals, runs, total_fit),
        "stability_plasticity": figures.plot_stability_plasticity(runs, fits),
        "forgetting": figures.plot_forgetting_heatmap(runs),
    }
    for fig in figs.values():
        if fig is not None:
            FigureCanvasAgg(fig).draw()
    return figs


@pytest.fixture(scope="module", params=list(DESIGNS), ids=list(DESIGNS))
def drawn(request: pytest.FixtureRequest) -> Drawn:
    design = DESIGNS[request.param]
    runs, evals = synthetic_tables(design)
    fits, total = synthetic_fits(runs)
    return Drawn(design, runs, evals, fits, total, draw_all(runs, evals, fits, total))


def _figs(d: Drawn) -> dict[str, Figure]:
    return {name: fig for name, fig in d.figs.items() if fig is not None}


# --- what a figure shows, read back from its artists ---------------------------------------------------------


def _legends(fig: Figure) -> list:
    return [*fig.legends, *(ax.get_legend() for ax in fig.axes if ax.get_legend() is not None)]


def _legend_entries(fig: Figure) -> list[tuple[str, object]]:
    """(text, legend handle) of every entry of every legend of `fig`."""
    return [(t.get_text(), h) for leg in _legends(fig) for t, h in zip(leg.get_texts(), leg.legend_handles, strict=True)]


def _is_drawn(artist) -> bool:
    if isinstance(artist, Container):
        return any(_is_drawn(c) for c in artist.get_children())
    if isinstance(artist, Line2D):
        return artist.get_visible() and len(artist.get_xdata()) > 0
    return artist.get_visible()


def _drawn_labels(fig: Figure) -> set[str]:
    """Labels of the visible artists on the visible axes (what a legend may name)."""
    return {lab for ax in fig.axes if ax.get_visible() for h, lab in zip(*ax.get_legend_handles_labels(), strict=True) if _is_drawn(h)}


def _tick_label_boxes(ax, axis) -> list:
    """Window extents of the non-empty, visible tick labels of `axis` that are in view (what is drawn)."""
    renderer = ax.figure.canvas.get_renderer()
    lo, hi = sorted(axis.get_view_interval())
    tol = 1e-9 * max(abs(lo), abs(hi))
    boxes = []
    for tick in [*axis.get_major_ticks(), *axis.get_minor_ticks()]:
        if not (tick.get_visible() and lo - tol <= tick.get_loc() <= hi + tol):
            continue
        boxes += [lab.get_window_extent(renderer) for lab in (tick.label1, tick.label2) if lab.get_visible() and lab.get_text().strip()]
    return boxes


def _same_colour(a, b) -> bool:
    return np.allclose(to_rgba(a), to_rgba(b), atol=1e-3)


def _seed_bands(ax) -> list:
    return [c for c in ax.collections if c.get_gid() == figures.SEED_SPREAD_GID]


def _bars(ax) -> list[ErrorbarContainer]:
    return [c for c in ax.containers if isinstance(c, ErrorbarContainer) and c.has_yerr]


def _reptile_name(row: pd.Series) -> str:
    """The heatmap column of a run, from its raw k, eps and reptile flag."""
    return f"k={int(row['k'])} eps={row['eps']:g}" if row["reptile"] else "off"


# --- the tests ---------------------------------------------------------------------------------------------------


def test_every_legend_entry_is_a_drawn_artist(drawn: Drawn) -> None:
    for name, fig in _figs(drawn).items():
        entries = _legend_entries(fig)
        drawn_labels = _drawn_labels(fig)
        assert entries or name == "forgetting", f"{name} has no legend"
        for text, _ in entries:
            assert text in drawn_labels, f"{name}: legend entry {text!r} names nothing drawn"


def test_fit_entries_are_the_fits_that_converged(drawn: Drawn) -> None:
    """A fit that failed (too few model sizes) gets no line and no legend entry; one that converged gets both."""
    texts = [t for t, _ in _legend_entries(drawn.figs["stability_plasticity"])]
    no_replay_ok = any(ff.fit.converged for ff in drawn.fits if ff.family == NO_REPLAY)
    assert any(t.startswith("no-replay fit") for t in texts) == no_replay_ok
    for family in {ff.family for ff in drawn.fits if ff.family != NO_REPLAY}:
        assert (f"fit: {family}" in texts) == any(ff.fit.converged for ff in drawn.fits if ff.family == family), family
    texts = [t for t, _ in _legend_entries(drawn.figs["loss_vs_flops"])]
    assert any("fit" in t for t in texts) == drawn.total_fit.fit.converged
    if drawn.design.no_replay_fit is not None:  # each design exercises the case it was made for
        assert no_replay_ok == drawn.total_fit.fit.converged == drawn.design.no_replay_fit


def _assert_no_tick_overlap(name: str, fig: Figure) -> None:
    for i, ax in enumerate(fig.axes):
        if not ax.get_visible():
            continue
        for axis in (ax.xaxis, ax.yaxis):
            boxes = _tick_label_boxes(ax, axis)
            for a in range(len(boxes)):
                for b in range(a + 1, len(boxes)):
                    assert not boxes[a].overlaps(boxes[b]), (
                        f"{name}, axes {i} ({ax.get_title()!r}): {axis.axis_name} tick labels overlap: "
                        f"{[t.get_text() for t in axis.get_ticklabels(which='both') if t.get_text()]}")


def test_tick_labels_do_not_overlap(drawn: Drawn) -> None:
    for name, fig in _figs(drawn).items():
        _assert_no_tick_overlap(name, fig)


@pytest.mark.parametrize(("lo", "hi"), [(3e10, 4.5e10), (5.1e10, 1.9e11), (1.1e9, 9e10), (1.2e5, 3e11), (1e5, 1e18)])
def test_log_ticks_stay_few_and_apart_on_any_flops_range(lo: float, hi: float) -> None:
    """The FLOPs axes' ticks on views the designs may miss, down to the narrow one of the reported overlap
    ("3x10^10 4x10^10"): at least two labels, none on a minor tick, none overlapping, on a narrow panel."""
    fig = Figure(figsize=(2.5, 1.5), layout="constrained")
    ax = fig.subplots()
    ax.plot([lo, hi], [2.0, 12.0])
    figures._log_axis(ax, "x", figures._sci)
    figures._log_axis(ax, "y", figures._plain)
    FigureCanvasAgg(fig).draw()
    assert len(_tick_label_boxes(ax, ax.xaxis)) >= 2
    assert not [t for t in ax.get_xticklabels(minor=True) if t.get_text()]
    _assert_no_tick_overlap(f"view {lo:g}..{hi:g}", fig)


def test_log_axes_label_no_minor_ticks(drawn: Drawn) -> None:
    for name in ("loss_vs_flops", "stability_plasticity"):
        for ax in drawn.figs[name].axes:
            if ax.get_visible() and ax.get_xscale() == "log":
                assert not [t for t in ax.get_xticklabels(minor=True) if t.get_text()], name
                assert 1 <= len(_tick_label_boxes(ax, ax.xaxis)) <= 5, name


def test_model_sizes_have_a_key(drawn: Drawn) -> None:
    """Size colours appear only in the no-replay panel, whose legend names each model and its parameter count."""
    sizes = palette.size_colors(drawn.runs["n_params"])
    size_rgba = {to_rgba(c) for c in sizes.values()}
    panel = next(ax for ax in drawn.figs["loss_vs_flops"].axes if ax.get_title().startswith("no replay"))
    texts = [t.get_text() for t in panel.get_legend().get_texts()]
    handles = dict(zip(*reversed(panel.get_legend_handles_labels()), strict=True))
    nr = no_replay_runs(drawn.runs).drop_duplicates("model")
    for model, n in zip(nr["model"], nr["n_params"], strict=True):
        entry = [t for t in texts if re.fullmatch(rf"{model} \([\d.]+[KMB]? params\)", t)]
        assert len(entry) == 1, f"no key entry for {model} in {texts}"
        assert _same_colour(handles[entry[0]].get_color(), sizes[n])
    for name, fig in _figs(drawn).items():
        for ax in fig.axes:
            if ax is not panel:
                used = {to_rgba(line.get_color()) for line in ax.get_lines()}
                assert not used & size_rgba, f"{name}, {ax.get_title()!r}: a size colour outside the panel about size"


def test_colour_is_alpha_and_reptile_is_marker_and_line_style(drawn: Drawn) -> None:
    """Outside the model-size panel, the artist labelled 'alpha=A, Reptile R' has alpha A's colour and R's marker/line style."""
    runs = drawn.runs
    alphas = palette.alpha_colors(runs["alpha"])
    keys = [(int(k), float(e)) if r else (0, 1.0) for k, e, r in zip(runs["k"], runs["eps"], runs["reptile"], strict=True)]
    styles = palette.reptile_styles(keys)
    by_name = {figures.reptile_label(*key): styles[key] for key in keys}
    checked = 0
    for name in ("loss_vs_flops", "stability_plasticity"):
        for ax in drawn.figs[name].axes:
            for handle, text in zip(*ax.get_legend_handles_labels(), strict=True):
                m = re.fullmatch(r"alpha=([\d.]+), Reptile (.+)", text)
                if not m:
                    continue
                line = handle.lines[0] if isinstance(handle, ErrorbarContainer) else handle
                assert _same_colour(line.get_color(), alphas[float(m[1])]), text
                if name == "stability_plasticity":
                    assert line.get_marker() == by_name[m[2]]["marker"], text
                else:
                    assert line.get_linestyle() == Line2D([], [], ls=by_name[m[2]]["linestyle"]).get_linestyle(), text
                checked += 1
    assert checked > 0


def test_seed_spread_is_shown_exactly_when_there_are_several_seeds(drawn: Drawn) -> None:
    several = drawn.design.seeds > 1
    figs = drawn.figs
    for ax in [a for a in figs["task_losses"].axes if a.get_visible()]:
        assert len(_seed_bands(ax)) == (len(TASKS) if several else 0)
    for ax in [a for a in figs["loss_vs_flops"].axes if a.get_visible()]:
        curves = [ln for ln in ax.get_lines() if not ln.get_label().startswith("_") and "fit" not in ln.get_label()]
        assert len(_seed_bands(ax)) == (len(curves) if several else 0)
    n_configs = drawn.runs.groupby(["model", "alpha", "k", "eps"]).ngroups
    for ax in figs["stability_plasticity"].axes:
        assert len(_bars(ax)) == (n_configs if several else 0)
        assert len([c for c in ax.containers if isinstance(c, ErrorbarContainer)]) == n_configs  # one point each
    if figs["forgetting"] is not None:
        texts = [t.get_text() for ax in figs["forgetting"].axes for t in ax.texts]
        assert texts and all(("±" in t) == several for t in texts)


def test_error_bars_are_mean_and_sample_std_over_seeds(drawn: Drawn) -> None:
    """Each point of stability_plasticity spans mean ± sample std of its configuration's seeds (computed here)."""
    if drawn.design.seeds == 1:
        pytest.skip("one seed: no bars")
    g = drawn.runs.groupby(["model", "alpha", "k", "eps"])
    for ax, metric in zip(drawn.figs["stability_plasticity"].axes, ("retained_loss", "learned_loss"), strict=True):
        want = sorted(zip(g["flops_per_new_token"].mean(), g[metric].mean() - g[metric].std(), g[metric].mean() + g[metric].std(), strict=True))
        got = sorted((s[0][0], s[0][1], s[1][1]) for c in _bars(ax) for s in c.lines[2][0].get_segments())
        np.testing.assert_allclose(got, want, rtol=1e-9)


def test_loss_bands_are_mean_and_sample_std_over_seeds(drawn: Drawn) -> None:
    """The band of each no-replay line of loss_vs_flops reaches mean ± sample std of val_loss_mean (computed here)."""
    if drawn.design.seeds == 1:
        pytest.skip("one seed: no bands")
    ev = drawn.evals[drawn.evals["flops_train"] > 0].merge(no_replay_runs(drawn.runs)[["run_id", "model"]], on="run_id")
    stats = ev.groupby(["model", "step"])["val_loss_mean"].agg(["mean", "std"])
    lo = (stats["mean"] - stats["std"]).groupby("model").min().sort_values().to_numpy()
    hi = (stats["mean"] + stats["std"]).groupby("model").max().sort_values().to_numpy()
    panel = next(ax for ax in drawn.figs["loss_vs_flops"].axes if ax.get_title().startswith("no replay"))
    ys = [band.get_paths()[0].vertices[:, 1] for band in _seed_bands(panel)]
    np.testing.assert_allclose(sorted(y.min() for y in ys), lo, rtol=1e-9)
    np.testing.assert_allclose(sorted(y.max() for y in ys), hi, rtol=1e-9)


def test_forgetting_heatmap_keeps_every_reptile_setting_apart(drawn: Drawn) -> None:
    fig = drawn.figs["forgetting"]
    if not drawn.design.replay:
        assert fig is None  # every model has one alpha and one Reptile setting: nothing to lay out
        return
    runs = drawn.runs.assign(column=lambda r: r.apply(_reptile_name, axis=1))
    want = runs.groupby(["model", "alpha", "column"])["forgetting"].mean()
    panels = [ax for ax in fig.axes if ax.get_xlabel() == "Reptile setting"]
    replay_models = sorted(set(runs.loc[runs["alpha"] > 0, "model"]))
    assert [ax.get_title().split(" (")[0] for ax in panels] == replay_models  # the other models have one cell each
    assert any(ax.get_ylabel() == "forgetting (nats/token)" for ax in fig.axes)  # the colour bar
    for ax in panels:
        model = ax.get_title().split(" (")[0]
        columns = [t.get_text() for t in ax.get_xticklabels()]
        assert columns == ["off", *(f"k={k} eps={e:g}" for k, e in REPTILE)]
        rows = [float(t.get_text()) for t in ax.get_yticklabels()]
        assert rows == list(ALPHAS)
        cells = ax.collections[0].get_array().reshape(len(rows), len(columns))
        for i, alpha in enumerate(rows):
            for j, col in enumerate(columns):
                if (model, alpha, col) in want:
                    assert cells[i, j] == pytest.approx(want[(model, alpha, col)], rel=1e-12), (alpha, col)
                else:  # a setting the sweep did not run: an empty cell, not a pooled value
                    assert np.ma.is_masked(cells[i, j]), (alpha, col)


def test_save_writes_png_and_pdf_at_the_given_dpi(tmp_path) -> None:
    fig = Figure(figsize=(2, 1))
    fig.subplots().plot([1, 2], [3, 4])
    small = figures.save(fig, tmp_path, "small", dpi=50)
    assert [p.name for p in small] == ["small.png", "small.pdf"] and all(p.stat().st_size > 0 for p in small)
    big = figures.save(fig, tmp_path, "big")
    assert matplotlib.image.imread(big[0]).shape[1] == pytest.approx(3 * matplotlib.image.imread(small[0]).shape[1], rel=0.1)


def test_figures_of_the_collected_sweep(collection) -> None:
    """The figures read the columns `analysis.collect` really writes. A slice of the standard sweep's usable
    runs (few panels keep it fast): two sizes, and on m3 replay without Reptile (3 seeds) and with k=10
    (1 seed), so seed counts differ within a figure."""
    runs = collection.runs
    runs = runs[runs["usable"] & runs["model"].isin(["m2", "m3"]) & runs["k"].isin([0, 10])]
    evals = collection.evals[collection.evals["run_id"].isin(runs["run_id"])]
    figs = draw_all(runs, evals, [], None)
    assert all(fig is not None for fig in figs.values())
    for name, fig in figs.items():
        assert {t for t, _ in _legend_entries(fig)} <= _drawn_labels(fig), name
        _assert_no_tick_overlap(name, fig)
    cells = [t.get_text() for t in figs["forgetting"].axes[0].texts]
    assert any("±" in t and "n=3" in t for t in cells) and any("±" not in t and "n=1" in t for t in cells)
    points = figs["stability_plasticity"].axes[0].containers
    assert 0 < len(_bars(figs["stability_plasticity"].axes[0])) < len(points)  # bars for 3 seeds, none for 1
