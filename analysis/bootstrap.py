"""Bootstrap confidence intervals for fits, resampling whole runs (never points inside a run).

Points from one run (several evaluations of it, or one point per run) share that run's noise, so
resampling points would understate the uncertainty. We resample run ids with replacement and keep
all of a drawn run's points. With ``strata`` (e.g. model size) runs are resampled within each
stratum, so every replicate keeps every scale of the design and a 3-parameter curve stays
identifiable with few sizes. Replicates whose refit does not converge are kept as NaN rows and
counted, not hidden.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from analysis.powerlaw import PARAM_NAMES, FitResult, params_from_theta, predict_theta

CI_LEVEL = 0.95


@dataclass(frozen=True)
class Bootstrap:
    """Refits of one fit on resampled runs."""

    form: str
    thetas: np.ndarray
    """[n_boot, n_params] optimizer coordinates; NaN rows for replicates that did not converge."""
    scales: tuple[float, ...]
    n_failed: int

    @property
    def ok(self) -> np.ndarray:
        """Thetas of the converged replicates."""
        return self.thetas[np.all(np.isfinite(self.thetas), axis=1)]

    def params(self) -> dict[str, np.ndarray]:
        """Bootstrap samples of every parameter, in the data's units (converged replicates only)."""
        rows = [params_from_theta(self.form, t, self.scales) for t in self.ok]
        return {k: np.array([r[k] for r in rows]) for k in PARAM_NAMES[self.form]}

    def ci(self, level: float = CI_LEVEL) -> dict[str, tuple[float, float]]:
        """Percentile interval of every parameter; NaN when no replicate converged."""
        return {k: percentile_interval(v, level) for k, v in self.params().items()}

    def band(self, *x: np.ndarray, level: float = CI_LEVEL) -> tuple[np.ndarray, np.ndarray]:
        """Pointwise percentile band of the predicted loss at `x` (for shaded curves)."""
        ok = self.ok
        if ok.shape[0] == 0:
            nan = np.full(np.broadcast(*[np.asarray(v) for v in x]).shape, np.nan)
            return nan, nan
        pred = predict_theta(ok, self.scales, *x)  # [n_ok, n_x]
        lo, hi = (1 - level) / 2, 1 - (1 - level) / 2
        return np.quantile(pred, lo, axis=0), np.quantile(pred, hi, axis=0)


def percentile_interval(samples: np.ndarray, level: float = CI_LEVEL) -> tuple[float, float]:
    """Equal-tailed percentile interval; picks sample values (no interpolation), so infinite samples are fine."""
    s = np.asarray(samples, dtype=float)
    s = s[~np.isnan(s)]
    if s.size == 0:
        return float("nan"), float("nan")
    lo, hi = (1 - level) / 2, 1 - (1 - level) / 2
    return float(np.quantile(s, lo, method="inverted_cdf")), float(np.quantile(s, hi, method="inverted_cdf"))


def resample_runs(runs: np.ndarray, rng: np.random.Generator, strata: np.ndarray | None = None) -> np.ndarray:
    """Indices of the points of a bootstrap replicate: whole runs drawn with replacement (within strata).

    `runs` holds the run id of every point; `strata` (same length) the stratum of every point,
    constant within a run.
    """
    runs = np.asarray(runs)
    strata_arr = np.zeros(runs.shape[0], dtype=int) if strata is None else np.asarray(strata)
    picked: list[np.ndarray] = []
    for s in _unique_in_order(strata_arr):
        ids = _unique_in_order(runs[strata_arr == s])
        for run in rng.choice(ids, size=len(ids), replace=True):
            picked.append(np.flatnonzero(runs == run))
    return np.concatenate(picked) if picked else np.zeros(0, dtype=int)


def bootstrap_fit(
    fit: Callable[[np.ndarray, FitResult], FitResult],
    full: FitResult,
    runs: np.ndarray,
    *,
    strata: np.ndarray | None = None,
    n_boot: int = 200,
    seed: int = 0,
    progress: Callable[[int], None] | None = None,
) -> Bootstrap:
    """Refit on `n_boot` replicates. ``fit(indices, full)`` fits the points at `indices` with ``init=full``.

    `full` is the fit on all points; it seeds every refit and fixes the reference scales, so all
    replicates' coordinates are comparable. Deterministic for a given seed.
    """
    rng = np.random.default_rng(seed)
    thetas = np.full((n_boot, len(full.theta)), np.nan)
    failed = 0
    for i in range(n_boot):
        res = fit(resample_runs(runs, rng, strata), full)
        if res.converged:
            thetas[i] = res.theta
        else:
            failed += 1
        if progress is not None:
            progress(1)
    return Bootstrap(full.form, thetas, full.scales, failed)


def _unique_in_order(values: np.ndarray) -> list:
    """Unique values in first-appearance order (deterministic for any dtype, unlike sets)."""
    seen: dict = {}
    for v in values.tolist():
        seen.setdefault(v, None)
    return list(seen)
