"""Confidence intervals for power-law fits: a residual bootstrap with a redrawn noise level.

Why not resample runs: with 1-3 seeds per model size, resampling runs within each size gives
intervals that are too narrow (a replicate of n runs drawn from n has (n-1)/n of the variance, and
one run per size cannot vary at all). In the synthetic study of `analysis.coverage` the stratified
run bootstrap covered the true parameters only 72-78% of the time with 2-3 seeds per size.

The method here (a parametric bootstrap of the fitted curve; coverage in docs/analysis.md):

1. Fit the curve to all runs; take its log-residuals r_i (relative errors) and the noise level
   sigma = sqrt(sum r_i^2 / (n - p)) with n runs and p parameters (lack of fit counts as noise,
   which errs on the wide side).
2. For each replicate, redraw the noise level from its sampling distribution,
   sigma* = sigma sqrt(df / chi2_df) with df = n - p (the step that a plain parametric bootstrap
   leaves out, and that makes the intervals t-like instead of normal-like for few runs),
   then new losses y*_i = yhat_i exp(sigma* z_i) with z_i ~ N(0, 1), and refit from the full fit.
3. Percentile intervals over the converged replicates.

There is no interval (and `Bootstrap.reason` says why) when the design cannot show seed-to-seed
noise: a stratum (a model size, or a replay rate) with a single run, no residual degrees of
freedom, or runs that lie exactly on the curve (every refit would be identical).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from analysis.powerlaw import FREE_PARAMETERS, PARAM_NAMES, FitResult, params_from_theta, predict_theta

CI_LEVEL = 0.95
NO_NOISE = 1e-9
"""Relative noise below this is the optimizer's tolerance, not the runs': treated as none."""
MIN_RUNS_PER_STRATUM = 2
"""Seeds needed at every scale before an interval is given: one run per scale shows no noise."""


@dataclass(frozen=True)
class Bootstrap:
    """Refits of one fit on simulated replicates, or the reason there is no interval."""

    form: str
    thetas: np.ndarray
    """[n_boot, n_params] optimizer coordinates; NaN rows for replicates that did not converge; 0 rows without an interval."""
    scales: tuple[float, ...]
    n_failed: int
    noise: float
    """sigma: the relative noise of one run's loss around the curve (NaN when not estimable)."""
    noise_df: int
    """Degrees of freedom of `noise` (runs minus parameters)."""
    reason: str = ""
    """Why there is no interval ("" when there is one)."""

    @property
    def ok(self) -> np.ndarray:
        """Thetas of the converged replicates (none when there is no interval)."""
        return self.thetas[np.all(np.isfinite(self.thetas), axis=1)]

    @property
    def has_interval(self) -> bool:
        return not self.reason and self.ok.shape[0] >= 2

    def params(self) -> dict[str, np.ndarray]:
        """Bootstrap samples of every parameter, in the data's units (converged replicates only)."""
        rows = [params_from_theta(self.form, t, self.scales) for t in self.ok]
        return {k: np.array([r[k] for r in rows]) for k in PARAM_NAMES[self.form]}

    def ci(self, level: float = CI_LEVEL) -> dict[str, tuple[float, float]]:
        """Percentile interval of every parameter; NaN pairs when there is no interval."""
        if not self.has_interval:
            return {k: (float("nan"), float("nan")) for k in PARAM_NAMES[self.form]}
        return {k: percentile_interval(v, level) for k, v in self.params().items()}

    def band(self, *x: np.ndarray, level: float = CI_LEVEL) -> tuple[np.ndarray, np.ndarray]:
        """Pointwise percentile band of the predicted loss at `x` (for shaded curves); NaN without an interval."""
        if not self.has_interval:
            nan = np.full(np.broadcast(*[np.asarray(v) for v in x]).shape, np.nan)
            return nan, nan
        pred = predict_theta(self.ok, self.scales, *x)  # [n_ok, n_x]
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


def redraw_noise(sigma: float, df: int, rng: np.random.Generator) -> float:
    """A draw of the noise level given its estimate `sigma` on `df` degrees of freedom: sigma sqrt(df / chi2_df)."""
    return float(sigma * np.sqrt(df / rng.chisquare(df)))


def too_few_runs(strata: np.ndarray, what: str = "scale") -> str:
    """Why no interval can be given when a stratum holds fewer than `MIN_RUNS_PER_STRATUM` runs ("" otherwise)."""
    values, counts = np.unique(np.asarray(strata).astype(str), return_counts=True)
    thin = [str(v) for v, c in zip(values, counts, strict=True) if c < MIN_RUNS_PER_STRATUM]
    if not thin:
        return ""
    return (f"no interval: one run at {what} {', '.join(thin)}, so the seed-to-seed noise cannot be estimated "
            f"there; run at least {MIN_RUNS_PER_STRATUM} seeds per {what} (3 recommended)")


def residual_bootstrap(
    refit: Callable[[np.ndarray, FitResult], FitResult],
    full: FitResult,
    xs: tuple[np.ndarray, ...],
    y: np.ndarray,
    *,
    strata: np.ndarray,
    n_boot: int = 200,
    seed: int = 0,
    what: str = "scale",
    progress: Callable[[int], None] | None = None,
) -> Bootstrap:
    """Refit `n_boot` simulated replicates of a converged `full` fit (see the module docstring).

    ``refit(y_star, full)`` fits the replicate's losses at the same inputs, starting from `full`.
    `strata` names every point's scale (model size, replay rate); `what` names it in messages.
    Deterministic for a given seed. Never raises for thin data: it returns a `Bootstrap` whose
    `reason` says why there is no interval.
    """
    y = np.asarray(y, dtype=float)
    n_params = len(full.theta)
    df = int(y.size - FREE_PARAMETERS.get(full.form, n_params))  # the pure law fixes E: one more degree of freedom
    pred = full.predict(*xs)
    resid = np.log(y) - np.log(pred)
    sigma = float(np.sqrt(np.sum(resid**2) / df)) if df > 0 else float("nan")

    def none(reason: str) -> Bootstrap:
        return Bootstrap(full.form, np.zeros((0, n_params)), full.scales, 0, sigma, max(df, 0), reason)

    reason = too_few_runs(strata, what)
    if reason:
        return none(reason)
    if df < 1:
        return none(f"no interval: {y.size} runs for {y.size - df} parameters leave no degrees of freedom for the noise")
    if not np.isfinite(sigma) or sigma < NO_NOISE:
        return none("no interval: the runs lie exactly on the fitted curve (no noise), so every refit would be identical")
    rng = np.random.default_rng(seed)
    thetas = np.full((n_boot, n_params), np.nan)
    failed = 0
    for i in range(n_boot):
        y_star = pred * np.exp(redraw_noise(sigma, df, rng) * rng.standard_normal(y.size))
        res = refit(y_star, full)
        if res.converged:
            thetas[i] = res.theta
        else:
            failed += 1
        if progress is not None:
            progress(1)
    boot = Bootstrap(full.form, thetas, full.scales, failed, sigma, df)
    if boot.ok.shape[0] < 2:
        return Bootstrap(full.form, thetas, full.scales, failed, sigma, df,
                         f"no interval: only {boot.ok.shape[0]} of {n_boot} refits converged")
    return boot
