"""The marks the figures draw: a configuration's mean line with its seed band, its mean point with
its seed error bar, and a fitted power law with its bootstrap band.

A band or bar appears only where more than one seed stands behind the mean (a single seed has no
spread to show); seed bands carry `SEED_SPREAD_GID`, which tells them apart from a fit's band.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.axes import Axes

from analysis.families import FamilyFit

SEED_SPREAD_GID = "seed-spread"
"""gid of every band over seeds, which tells them apart from a fit's bootstrap band."""


def line_with_band(ax: Axes, x: pd.Series, mean: pd.Series, std: pd.Series, n: pd.Series, *, color, ls, label: str) -> None:
    """A mean line and, where it averages more than one seed, a band of ± std tagged `SEED_SPREAD_GID`."""
    ax.plot(x, mean, color=color, ls=ls, lw=1.3, label=label)
    spread = (n > 1).to_numpy()
    if spread.any():
        ax.fill_between(x, mean - std, mean + std, where=spread, color=color, alpha=0.2, lw=0, gid=SEED_SPREAD_GID)


def mean_point(ax: Axes, x: float, y: float, std: float, n: int, *, color, marker: str, label: str) -> None:
    """A configuration's mean as an errorbar container, with a ± std bar only when it has more than one
    seed (a single seed has no spread to show). Containers for all points keep the legend in drawing order."""
    ax.errorbar(x, y, yerr=std if n > 1 else None, ls="", capsize=2, elinewidth=0.9, color=color, marker=marker, ms=5,
                mec="white", mew=0.4, label=label, zorder=3)


def draw_fit(ax: Axes, ff: FamilyFit, *, color, ls, label: str, band: bool, within: tuple[float, float] | None = None) -> None:
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
