"""Which law a family of runs follows: a power law with a floor, ``L = E + A C^-b``, or a pure one, ``L = A C^-b``.

Over one or two decades of compute the floor E is often not identified: the fit runs E to its lower bound (about
e^-10 of the smallest loss), which `analysis.powerlaw` rightly calls "not a fit". That is not a reason to report
nothing: the data then say the loss falls as a pure power law over the range observed. So every fit of a family
fits both forms and chooses one by a criterion fixed in advance (`choose_law`):

1. E at its lower bound in the floor form and the pure form converged: the **pure** law (the data show no floor);
2. both converged: the form with the lower **AIC** of its log-residuals (Gaussian, AIC = n log(RSS/n) + 2p with
   p = 3 for the floor form, 2 for the pure one; a tie goes to the pure law, the simpler one);
3. only one of the two converged: that one;
4. neither: the floor form's failure and its reason.

The pure law is fitted like the floor form (Huber loss of the log-residuals, L-BFGS-B within bounds, the same
`BOUND_TOLERANCE` rule for its exponent). Its `FitResult` has form `PURE`, E = 0 and the coordinates
[`PURE_LOG_E`, a, b], so prediction, inversion and the bootstrap treat it exactly like the floor form.
Tested on synthetic data drawn from either form (tests/analysis/test_analysis_law_form.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize

from analysis.powerlaw import (
    BOUND_TOLERANCE,
    EXPONENT_BOUNDS,
    HUBER_DELTA,
    PURE,
    PURE_LOG_E,
    FitResult,
    fit_power_law,
    params_from_theta,
)

FLOOR_FORM, PURE_FORM = "L = E + A * x^-b", "L = A * x^-b (pure power law, E = 0)"
"""The two forms as the report writes them."""


@dataclass(frozen=True)
class LawChoice:
    """The chosen fit of one family, both candidates and why one was chosen."""

    fit: FitResult
    floor: FitResult
    pure: FitResult
    why: str

    @property
    def form(self) -> str:
        return PURE_FORM if self.fit.form == PURE else FLOOR_FORM


def fit_pure_power_law(c: np.ndarray, loss: np.ndarray, *, delta: float = HUBER_DELTA, init: FitResult | None = None) -> FitResult:
    """Fit ``L = A C^-b`` (E = 0) to log-residuals with the Huber loss; needs >= 3 distinct C and >= 3 points.

    `init` (a full fit, for bootstrap refits) gives the reference scale and a starting point."""
    x = np.asarray(c, dtype=float).ravel()
    y = np.asarray(loss, dtype=float).ravel()
    if x.shape != y.shape:
        raise ValueError(f"inputs and loss must have the same length, got {x.size} and {y.size}")
    ranges = {"C": (float(np.nanmin(x)), float(np.nanmax(x))) if x.size else (math.nan, math.nan)}

    def failed(reason: str, theta: tuple[float, ...] = (math.nan,) * 3, scale: float = 1.0) -> FitResult:
        return FitResult(PURE, params_from_theta(PURE, np.array(theta), (scale,)), False, reason, int(y.size),
                         math.nan, ranges, theta, (scale,))

    if not (np.all(np.isfinite(x) & (x > 0)) and np.all(np.isfinite(y) & (y > 0))):
        return failed("C or loss has non-finite or non-positive values; drop those runs before fitting")
    if np.unique(x).size < 3 or y.size < 3:
        return failed(f"too few points: {np.unique(x).size} distinct C value(s) and {y.size} runs, need at least 3 "
                      "of each to fit 2 parameters")
    scale = init.scales[0] if init is not None else float(np.exp(np.mean(np.log(x))))
    u, log_y = np.log(x / scale), np.log(y)
    log_mean = float(np.log(np.mean(y)))
    bounds = [(log_mean - 15.0, log_mean + 5.0), EXPONENT_BOUNDS]

    def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
        r = theta[0] - theta[1] * u - log_y
        absr = np.abs(r)
        huber = np.where(absr <= delta, 0.5 * r**2, delta * (absr - 0.5 * delta))
        dr = np.clip(r, -delta, delta)
        k = 1.0 / (y.size * delta)
        return float(huber.sum() * k), np.array([dr.sum(), -(dr * u).sum()]) * k

    slope, intercept = np.polyfit(u, log_y, 1)  # least squares in log space: the natural start
    starts = [np.clip([intercept, -slope], [b[0] for b in bounds], [b[1] for b in bounds])]
    if init is not None and np.all(np.isfinite(init.theta[1:])):
        starts.insert(0, np.clip(np.asarray(init.theta[1:]), [b[0] for b in bounds], [b[1] for b in bounds]))
    results = [minimize(objective, s, jac=True, method="L-BFGS-B", bounds=bounds,
                        options={"maxiter": 2000, "ftol": 1e-13, "gtol": 1e-9}) for s in starts]
    best = min(results, key=lambda r: r.fun)
    theta = (PURE_LOG_E, float(best.x[0]), float(best.x[1]))
    confirmed = [r for r in results if r.success and r.fun <= best.fun + 0.01 * abs(best.fun) + 1e-12]
    if not confirmed:
        return failed(f"L-BFGS-B did not converge ({best.message}); add runs or check the data for outliers", theta, scale)
    lo, hi = EXPONENT_BOUNDS
    tol = BOUND_TOLERANCE * (hi - lo)
    if not lo + tol < theta[2] < hi - tol:
        side = "lower" if theta[2] <= lo + tol else "upper"
        return failed(f"b stuck at its {side} bound ({theta[2]:.3g}): the loss does not fall as a power law of C; "
                      "the fit is not meaningful", theta, scale)
    return FitResult(PURE, params_from_theta(PURE, np.array(theta), (scale,)), True, "", int(y.size), float(best.fun),
                     ranges, theta, (scale,))


def aic(fit: FitResult, c: np.ndarray, loss: np.ndarray) -> float:
    """Gaussian AIC of a fit's log-residuals: n log(RSS/n) + 2p (p = 3 with a floor, 2 without)."""
    y = np.asarray(loss, dtype=float)
    r = np.log(y) - np.log(fit.predict(np.asarray(c, dtype=float)))
    p = 2 if fit.form == PURE else 3
    return float(y.size * math.log(max(float(np.sum(r**2)) / y.size, 1e-300)) + 2 * p)


def choose_law(c: np.ndarray, loss: np.ndarray, *, n_starts: int = 8) -> LawChoice:
    """Fit both forms and choose one by the rule of the module docstring."""
    floor = fit_power_law(c, loss, n_starts=n_starts)
    pure = fit_pure_power_law(c, loss)
    if floor.converged and pure.converged:
        a_floor, a_pure = aic(floor, c, loss), aic(pure, c, loss)
        if a_floor < a_pure:
            return LawChoice(floor, floor, pure, f"with a floor: lower AIC ({a_floor:.1f} against {a_pure:.1f} for the pure law)")
        return LawChoice(pure, floor, pure, f"pure power law: AIC {a_pure:.1f}, not above {a_floor:.1f} for the floor form")
    if pure.converged and floor.reason.startswith("log E stuck at its lower bound"):
        return LawChoice(pure, floor, pure, "pure power law: the floor E ran to its lower bound (the data show no floor)")
    if floor.converged:
        return LawChoice(floor, floor, pure, f"with a floor: the pure law did not fit ({pure.reason})")
    return LawChoice(floor, floor, pure, f"no law: {floor.reason}")


def refit_like(choice_form: str):
    """The refit of a bootstrap replicate in the chosen form, started from the full fit."""
    if choice_form == PURE:
        return lambda x, y_star, full: fit_pure_power_law(x, y_star, init=full)
    return lambda x, y_star, full: fit_power_law(x, y_star, init=full, n_starts=2)
