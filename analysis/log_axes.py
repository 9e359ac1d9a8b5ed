"""Log axes whose tick labels never run into each other (`log_axis`: a few labelled major ticks,
unlabelled minor ones), and the tick labels the figures use on them (`sci` for FLOPs, `plain` for losses)."""

from __future__ import annotations

import math

import numpy as np
from matplotlib.axes import Axes
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter

from analysis.figure_style import TICK_FONT


class LogTicks(LogLocator):
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


def log_axis(ax: Axes, which: str, formatter) -> None:
    """Log-scale `which` ("x" or "y") of `ax` with `LogTicks` labelled by `formatter` and unlabelled minor ticks.

    x gets fewer ticks than y: its labels ("2×10^10") are wide, y's (loss: "3") are short.
    """
    getattr(ax, f"set_{which}scale")("log")
    axis = ax.xaxis if which == "x" else ax.yaxis
    axis.set_major_locator(LogTicks(max_ticks=4 if which == "x" else 6))
    axis.set_major_formatter(FuncFormatter(formatter))
    axis.set_minor_formatter(NullFormatter())
    ax.tick_params(labelsize=TICK_FONT)


def sci(value: float, _pos=None) -> str:
    """'10^9' for a power of ten, else '2×10^9' or '1.05×10^11' (mathtext): short FLOPs labels."""
    if value <= 0:
        return ""
    exp = math.floor(math.log10(value) + 1e-9)
    mant = value / 10.0**exp
    if abs(mant - 1) < 1e-6:
        return rf"$10^{{{exp}}}$"
    return rf"${mant:.3g}{{\times}}10^{{{exp}}}$"


def plain(value: float, _pos=None) -> str:
    """3, 4, 6 instead of 10^0.5: log-scaled loss axes read better in plain numbers."""
    return f"{value:g}"
