"""Intervals over seeds: a mean (Student t) and a difference of two means (Welch).

These are the intervals of the per-setting tables and of the claims (`analysis.claims`): the seeds
of a setting are independent runs, so the textbook t intervals apply; with 3 seeds they are wide
(t_{0.975, 2} = 4.30), which is the honest width of three runs. A setting with fewer than two
finite values has no interval (NaN), never a zero-width one. Their coverage under normal noise is
checked in `tests/analysis/test_analysis_coverage.py`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from scipy import stats

from analysis.bootstrap import CI_LEVEL


@dataclass(frozen=True)
class Estimate:
    """A mean (or difference of means) with its 95% interval and the runs behind it."""

    value: float
    low: float
    high: float
    n: int
    """Runs behind the estimate (the smaller group for a difference)."""

    @property
    def has_interval(self) -> bool:
        return math.isfinite(self.low) and math.isfinite(self.high)

    def sign(self) -> int:
        """+1 when the whole interval is above 0, -1 when below, 0 when it contains 0 or is missing."""
        if not self.has_interval:
            return 0
        return 1 if self.low > 0 else (-1 if self.high < 0 else 0)

    def text(self, digits: int = 3) -> str:
        if not math.isfinite(self.value):
            return "–"
        if not self.has_interval:
            why = f"{self.n} run" if self.n < 2 else "runs without spread"
            return f"{self.value:+.{digits}f} (no interval: {why})"
        return f"{self.value:+.{digits}f} [{self.low:+.{digits}f}, {self.high:+.{digits}f}]"


def _finite(values: Iterable[float]) -> np.ndarray:
    v = np.asarray(list(values), dtype=float)
    return v[np.isfinite(v)]


def mean_interval(values: Iterable[float], level: float = CI_LEVEL) -> Estimate:
    """Mean with a Student t interval; NaN bounds for fewer than two finite values or no spread among them."""
    v = _finite(values)
    if v.size == 0:
        return Estimate(math.nan, math.nan, math.nan, 0)
    mean = float(v.mean())
    se = float(v.std(ddof=1) / math.sqrt(v.size)) if v.size >= 2 else 0.0
    if se == 0.0:  # one run, or identical runs: no spread to build an interval from
        return Estimate(mean, math.nan, math.nan, int(v.size))
    half = float(stats.t.ppf(0.5 + level / 2, v.size - 1) * se)
    return Estimate(mean, mean - half, mean + half, int(v.size))


def difference_interval(a: Iterable[float], b: Iterable[float], level: float = CI_LEVEL) -> Estimate:
    """mean(a) - mean(b) with a Welch interval; NaN bounds unless both groups have two finite values and some spread."""
    x, y = _finite(a), _finite(b)
    if x.size == 0 or y.size == 0:
        return Estimate(math.nan, math.nan, math.nan, int(min(x.size, y.size)))
    diff = float(x.mean() - y.mean())
    if x.size < 2 or y.size < 2:
        return Estimate(diff, math.nan, math.nan, int(min(x.size, y.size)))
    vx, vy = x.var(ddof=1) / x.size, y.var(ddof=1) / y.size
    se = math.sqrt(vx + vy)
    if se == 0.0:  # identical runs: no spread to build an interval from
        return Estimate(diff, math.nan, math.nan, int(min(x.size, y.size)))
    df = (vx + vy) ** 2 / (vx**2 / (x.size - 1) + vy**2 / (y.size - 1))
    half = float(stats.t.ppf(0.5 + level / 2, df) * se)
    return Estimate(diff, diff - half, diff + half, int(min(x.size, y.size)))
