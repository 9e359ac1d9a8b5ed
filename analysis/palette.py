"""One colour-blind-safe palette for every figure, so a colour means the same thing everywhere.

- model size: sequential (viridis, dark = small, light = large, stopping before the pale yellow end);
- replay rate alpha: distinct Okabe-Ito colours, black for alpha = 0 (the no-replay baseline);
- tasks: seaborn's "colorblind" qualitative palette;
- Reptile on/off: marker and line style, never colour, so it combines with the alpha colours.
"""

from __future__ import annotations

from collections.abc import Iterable

import matplotlib as mpl
import seaborn as sns

OKABE_ITO = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442")
"""Okabe & Ito (2008) colours, yellow last (hard to see on white)."""
BASELINE = "#000000"
FIT = "#4D4D4D"
REPTILE_STYLE = {False: {"marker": "o", "linestyle": "-"}, True: {"marker": "s", "linestyle": "--"}}


def size_colors(sizes: Iterable[float]) -> dict[float, tuple[float, float, float, float]]:
    """Sequential colour per model size (by parameter count, so the order is the size order)."""
    uniq = sorted({float(s) for s in sizes})
    cmap = mpl.colormaps["viridis"]
    if len(uniq) == 1:
        return {uniq[0]: cmap(0.35)}
    return {s: cmap(0.05 + 0.8 * i / (len(uniq) - 1)) for i, s in enumerate(uniq)}


def alpha_colors(alphas: Iterable[float]) -> dict[float, str]:
    """Distinct colour per replay rate; alpha = 0 is black."""
    out: dict[float, str] = {}
    others = sorted({float(a) for a in alphas if float(a) != 0.0})
    for a in {float(a) for a in alphas}:
        if a == 0.0:
            out[a] = BASELINE
    for i, a in enumerate(others):
        out[a] = OKABE_ITO[i % len(OKABE_ITO)]
    return out


def task_colors(tasks: Iterable[str]) -> dict[str, tuple[float, float, float]]:
    """Qualitative colour per task, in sequence order."""
    tasks = list(tasks)
    pal = sns.color_palette("colorblind", n_colors=max(len(tasks), 1))
    return {t: pal[i] for i, t in enumerate(tasks)}
