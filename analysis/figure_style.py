"""What every figure shares besides its data: axis labels, font size, names of settings and model
sizes, the figure legend and title, and how a figure is written to disk (PNG and PDF).

Kept apart from the figures themselves (`analysis.figures`, `analysis.alignment`,
`analysis.downstream`, `analysis.study`) so that a convention changes in one place.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from analysis import palette

FLOPS_LABEL = "training FLOPs (new + replay + Reptile)"
PER_TOKEN_LABEL = "training FLOPs per new-data token"
LOSS_LABEL = "validation loss (nats/token)"
SPREAD = "mean ± 1 sample std over seeds"
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


def group_label(alpha: float, k: int, eps: float) -> str:
    """'alpha=0.5, Reptile off': a configuration's legend entry where the panel already names the model."""
    return f"alpha={alpha:g}, Reptile {reptile_label(k, eps)}"


def fmt_params(n: float) -> str:
    """'2.1M params' ('size unknown' when the run did not record it): a model's size in panel titles and keys."""
    if not np.isfinite(n) or n <= 0:
        return "size unknown"
    for unit, div in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= div:
            return f"{n / div:.3g}{unit} params"
    return f"{n:.0f} params"


def legend(fig: Figure, axes: Iterable[Axes], **kw) -> None:
    """One figure legend of the labelled artists drawn on `axes`, the first artist of each label."""
    handles: dict[str, object] = {}
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(lab, h)
    if handles:
        fig.legend(list(handles.values()), list(handles), **kw)


def suptitle(fig: Figure, text: str, fontsize: float = 10) -> None:
    """`text` as the figure's title, wrapped to the figure's width (a narrow figure's title would overhang)."""
    chars = max(30, int(fig.get_figwidth() * 72 / (0.55 * fontsize)))  # an average glyph is about 0.55 em wide
    fig.suptitle(textwrap.fill(text, chars), fontsize=fontsize)
