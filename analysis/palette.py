"""One colour-blind-safe palette for every figure, so a colour means the same thing everywhere.

- model size: sequential (viridis, dark = small, light = large, stopping before the pale yellow end),
  used only in panels about model size, always with a key naming the models;
- replay rate alpha: distinct Okabe-Ito colours, black for alpha = 0 (the no-replay baseline);
- tasks: seaborn's "colorblind" qualitative palette;
- Reptile setting (off, or each (k, eps)): marker and line style, never colour, so it combines
  with the alpha colours;
- fits: greys; the forgetting heatmap: one sequential colour map.
"""

from __future__ import annotations

from collections.abc import Iterable

import matplotlib as mpl
import seaborn as sns

OKABE_ITO = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442")
"""Okabe & Ito (2008) colours, yellow last (hard to see on white)."""
BASELINE = "#000000"
FIT = "#4D4D4D"
"""The no-replay family's fit."""
REPLAY_FIT = "#999999"
"""Replay families' fits (lighter than FIT, so the reference curve stands out)."""
FORGETTING_CMAP = "rocket_r"
"""Sequential map of the forgetting heatmap (light = little forgetting)."""
REPTILE_OFF = (0, 1.0)
"""The (k, eps) key of a run without Reptile, as `analysis.families.reptile_key` writes it."""

_REPTILE_MARKERS = ("s", "^", "D", "v", "P", "X", "*")
_REPTILE_DASHES = ("--", "-.", ":", (0, (5, 1.5, 1, 1.5, 1, 1.5)), (0, (8, 2)), (0, (2, 1)), (0, (4, 1, 1, 1)))


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


def reptile_styles(keys: Iterable[tuple[int, float]]) -> dict[tuple[int, float], dict]:
    """{"marker", "linestyle"} per Reptile setting (k, eps): circle and solid line when off (`REPTILE_OFF`),
    then a distinct marker and dash pattern per setting in (k, eps) order (cycling after seven)."""
    on = sorted({(int(k), float(e)) for k, e in keys} - {REPTILE_OFF})
    out = {REPTILE_OFF: {"marker": "o", "linestyle": "-"}}
    for i, key in enumerate(on):
        out[key] = {"marker": _REPTILE_MARKERS[i % len(_REPTILE_MARKERS)], "linestyle": _REPTILE_DASHES[i % len(_REPTILE_DASHES)]}
    return out


def task_colors(tasks: Iterable[str]) -> dict[str, tuple[float, float, float]]:
    """Qualitative colour per task, in sequence order."""
    tasks = list(tasks)
    pal = sns.color_palette("colorblind", n_colors=max(len(tasks), 1))
    return {t: pal[i] for i, t in enumerate(tasks)}
