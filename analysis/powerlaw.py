"""Inverse power-law fits in log space: ``L(C) = E + A C^-b`` and ``L(N, D) = E + A/N^alpha + B/D^beta``.

Method (Hoffmann et al. 2022, as re-done by Besiroglu et al. 2024): the model is written as a
log-sum-exp, ``log L = LSE(e, a - b log C)`` with ``E = exp(e)``, ``A = exp(a)``, so every term stays
positive and the residuals ``log L_pred - log L`` are relative errors. The objective is the Huber
loss of those residuals (delta 1e-3 by default: nearly an L1 fit, robust to outlier runs),
minimised by L-BFGS-B with analytic gradients inside bounds that keep parameters meaningful
(exponents in [0, 4], E no larger than the largest loss).

Starting points: the objective is evaluated on a grid of initial values (vectorised, cheap) and
L-BFGS-B is started from the best few grid points; the best optimum wins. Inputs are rescaled by
their geometric mean before fitting (``C/C0``) so the problem is well conditioned; reported
parameters are converted back to the original units (the optimum is unchanged by this).

Every fit returns a `FitResult`. A fit that cannot be trusted comes back with ``converged=False``
and a ``reason`` saying what went wrong and what to do; it never raises for bad data. The cases:

- an input or a loss that is NaN, infinite, zero or negative;
- too few distinct values of an input (< 3) or too few points (< parameters + 1);
- (two-variable form) log N and log D (near) collinear, |corr| >= `COLLINEAR_CORR`: the data cannot
  separate the two terms (e.g. every run at 20 tokens per parameter);
- L-BFGS-B not converging from any start;
- a parameter stuck at a bound: within `BOUND_TOLERANCE` of its allowed range from either end, the
  one rule for every parameter of every fit (full fits and bootstrap refits alike).

It raises `ValueError` only for a programming error: inputs of different lengths, or an `init` of
the other form. The functions are pure: same inputs, same result.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache

import numpy as np
from scipy.optimize import minimize
from scipy.special import logsumexp
from threadpoolctl import ThreadpoolController

HUBER_DELTA = 1e-3
"""Huber threshold on log-residuals used by Hoffmann et al. and the Epoch replication."""
EXPONENT_BOUNDS = (0.0, 4.0)
"""Exponents outside this range are not a scaling law any more; hitting a bound means failure."""
BOUND_TOLERANCE = 0.01
"""A parameter within this fraction of its allowed range from a bound is "stuck at the bound" (b > 3.96
of [0, 4], say): the optimum was cut off by the bound, so the fitted values mean nothing."""
COLLINEAR_CORR = 0.99
"""|corr(log N, log D)| at or above this leaves the two-variable fit unable to tell N's term from D's."""

PURE = "pure_power_law"
"""Form of ``L = A C^-b`` (no floor), fitted by `analysis.law_form.fit_pure_power_law`."""
PURE_LOG_E = -1000.0
"""log E of the pure form: exp(-1000) is 0.0 in float64, so prediction and inversion need no special case."""
FREE_PARAMETERS = {"power_law": 3, PURE: 2, "two_variable": 5}
"""Parameters each form fits (the residual degrees of freedom are runs minus these)."""

_E_FRACTIONS = (0.05, 0.3, 0.6, 0.8, 0.9, 0.97)  # grid of E as a fraction of the smallest loss
_A_FRACTIONS = (0.01, 0.05, 0.2, 0.5, 1.0, 3.0)  # grid of each term at the reference scale / mean loss
_EXPONENT_GRID = (0.05, 0.15, 0.3, 0.5, 0.8, 1.2, 2.0)


@dataclass(frozen=True)
class FitResult:
    """Outcome of one fit. When ``converged`` is False, ``params`` are for diagnosis only.

    ``params`` are in the data's own units: ``E, A, b`` for `fit_power_law`, ``E, A, alpha, B, beta``
    for `fit_two_variable`. ``scales`` are the reference values the inputs were divided by.
    """

    form: str
    """"power_law", `PURE` or "two_variable"."""
    params: dict[str, float]
    converged: bool
    reason: str
    """Empty when converged; otherwise what went wrong and how to fix it."""
    n_points: int
    objective: float
    """Mean Huber loss of the log-residuals divided by delta (about the mean |relative error|)."""
    ranges: dict[str, tuple[float, float]]
    """Observed range of each input variable (to flag extrapolation)."""
    theta: tuple[float, ...] = field(repr=False)
    """Optimizer coordinates [e, a1, s1, (a2, s2)] in rescaled units."""
    scales: tuple[float, ...] = field(repr=False)

    def predict(self, *x: np.ndarray | float) -> np.ndarray:
        """Predicted loss at ``C`` (power law) or at ``N, D`` (two-variable)."""
        return predict_theta(np.asarray(self.theta), self.scales, *x)

    def inverse(self, loss: np.ndarray | float) -> np.ndarray:
        """The C at which the power law predicts `loss`: inf where loss <= E (never reached), NaN for a NaN/inf loss."""
        if self.form not in ("power_law", PURE):
            raise ValueError("inverse is defined for the one-variable power law only")
        return invert_power_law(np.asarray(self.theta), self.scales[0], loss)


def predict_theta(theta: np.ndarray, scales: Sequence[float], *x: np.ndarray | float) -> np.ndarray:
    """Loss predicted by optimizer coordinates `theta` (shape [n_params] or [n_samples, n_params])."""
    theta = np.asarray(theta, dtype=float)
    n_terms = (theta.shape[-1] - 1) // 2
    if len(x) != n_terms or len(scales) != n_terms:
        raise ValueError(f"this model takes {n_terms} input(s), got {len(x)}")
    u = [np.log(np.asarray(xi, dtype=float) / s) for xi, s in zip(x, scales, strict=True)]
    cols = np.moveaxis(theta, -1, 0)  # [n_params] or [n_params, n_samples]
    if theta.ndim == 2:
        cols = cols[..., None]  # [n_params, n_samples, 1] broadcasts against x of shape [n_x]
    logs = [cols[0]] + [cols[1 + 2 * i] - cols[2 + 2 * i] * u[i] for i in range(n_terms)]
    return np.exp(np.logaddexp.reduce(np.broadcast_arrays(*logs), axis=0))


def invert_power_law(theta: np.ndarray, scale: float, loss: np.ndarray | float) -> np.ndarray:
    """C with E + A (C/scale)^-b = loss, for coordinates [e, a, b] (or [n_samples, 3]).

    inf where a finite loss is at or below the floor E (never reached by any C); NaN where the loss
    or a coordinate is NaN or infinite (a diverged run must not read as "unreachable"). Never raises.
    """
    theta = np.asarray(theta, dtype=float)
    e, a, b = (theta[..., i] for i in range(3))
    if theta.ndim == 2:
        e, a, b = e[:, None], a[:, None], b[:, None]
    loss = np.asarray(loss, dtype=float)
    excess = loss - np.exp(e)
    valid = np.isfinite(loss) & np.isfinite(e) & np.isfinite(a) & np.isfinite(b)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        u = (a - np.log(np.where(excess > 0, excess, np.nan))) / b
        c = scale * np.exp(u)
    return np.where(valid, np.where(excess > 0, c, np.inf), np.nan)


def params_from_theta(form: str, theta: np.ndarray, scales: Sequence[float]) -> dict[str, float]:
    """Convert optimizer coordinates to parameters in the data's units (A = exp(a) * scale^b)."""
    t = np.asarray(theta, dtype=float)
    if form in ("power_law", PURE):
        return {"E": float(np.exp(t[0])), "A": float(np.exp(t[1] + t[2] * np.log(scales[0]))), "b": float(t[2])}
    return {
        "E": float(np.exp(t[0])),
        "A": float(np.exp(t[1] + t[2] * np.log(scales[0]))),
        "alpha": float(t[2]),
        "B": float(np.exp(t[3] + t[4] * np.log(scales[1]))),
        "beta": float(t[4]),
    }


PARAM_NAMES = {"power_law": ("E", "A", "b"), PURE: ("E", "A", "b"), "two_variable": ("E", "A", "alpha", "B", "beta")}


def fit_power_law(
    c: np.ndarray,
    loss: np.ndarray,
    *,
    delta: float = HUBER_DELTA,
    n_starts: int = 8,
    init: FitResult | None = None,
) -> FitResult:
    """Fit ``L = E + A C^-b`` (C: compute, FLOPs per token, ...). Needs >= 3 distinct C and >= 4 points.

    `init` (e.g. the full-data fit, for bootstrap refits) adds its optimum as a starting point and
    makes this fit use its reference scales, so the two results' `theta` are comparable.
    """
    return _fit("power_law", [c], loss, delta=delta, n_starts=n_starts, init=init, names=["C"])


def fit_two_variable(
    n: np.ndarray,
    d: np.ndarray,
    loss: np.ndarray,
    *,
    delta: float = HUBER_DELTA,
    n_starts: int = 8,
    init: FitResult | None = None,
) -> FitResult:
    """Fit ``L = E + A/N^alpha + B/D^beta`` (N parameters, D tokens). Needs >= 3 distinct N and D, >= 6 points.

    `init` as in `fit_power_law`.
    """
    return _fit("two_variable", [n, d], loss, delta=delta, n_starts=n_starts, init=init, names=["N", "D"])


def _fit(
    form: str,
    xs: list[np.ndarray],
    loss: np.ndarray,
    *,
    delta: float,
    n_starts: int,
    init: FitResult | None,
    names: list[str],
) -> FitResult:
    xs = [np.asarray(x, dtype=float).ravel() for x in xs]
    y = np.asarray(loss, dtype=float).ravel()
    n_params = 1 + 2 * len(xs)
    if any(x.shape != y.shape for x in xs):
        raise ValueError(f"inputs and loss must have the same length, got {[x.size for x in xs]} and {y.size}")

    def failed(reason: str, theta: np.ndarray | None = None, scales: Sequence[float] | None = None) -> FitResult:
        scales = tuple(scales) if scales is not None else tuple(1.0 for _ in xs)
        if theta is None:
            params = {k: float("nan") for k in PARAM_NAMES[form]}
            theta_t: tuple[float, ...] = tuple(float("nan") for _ in range(n_params))
        else:
            params, theta_t = params_from_theta(form, theta, scales), tuple(map(float, theta))
        return FitResult(form, params, False, reason, int(y.size), float("nan"), _ranges(xs, names), theta_t, scales)

    for name, x in zip(names, xs, strict=True):
        if not np.all(np.isfinite(x) & (x > 0)):
            return failed(f"{name} has non-finite or non-positive values; drop those runs before fitting")
    if not np.all(np.isfinite(y) & (y > 0)):
        return failed("loss has non-finite or non-positive values (diverged runs?); drop them before fitting")
    for name, x in zip(names, xs, strict=True):
        if np.unique(x).size < 3:
            return failed(
                f"too few points: {np.unique(x).size} distinct {name} value(s), need at least 3 "
                f"to fit {n_params} parameters; add runs at more scales"
            )
    if y.size < n_params + 1:
        return failed(f"too few points: {y.size} runs for {n_params} parameters; need at least {n_params + 1}")
    if len(xs) == 2:
        corr = float(np.corrcoef(np.log(xs[0]), np.log(xs[1]))[0, 1])
        if abs(corr) >= COLLINEAR_CORR:
            return failed(
                f"{names[0]} and {names[1]} are (near) collinear: corr(log {names[0]}, log {names[1]}) = {corr:.4f}, so the "
                f"fit cannot tell the {names[0]} term from the {names[1]} term (e.g. every run at the same tokens per "
                f"parameter); add runs that vary {names[1]} at a fixed {names[0]}, or fit the one-variable form"
            )

    if init is not None:
        if init.form != form:
            raise ValueError(f"init is a {init.form} fit, this is a {form} fit")
        scales = init.scales
    else:
        scales = tuple(float(np.exp(np.mean(np.log(x)))) for x in xs)
    u = np.stack([np.log(x / s) for x, s in zip(xs, scales, strict=True)])  # [n_terms, n_points]
    log_y = np.log(y)
    bounds = _bounds(y, len(xs))

    def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
        z = _terms(theta, u)  # [n_terms + 1, n_points]
        zmax = z.max(axis=0)
        ez = np.exp(z - zmax)
        total = ez.sum(axis=0)
        r = zmax + np.log(total) - log_y  # log-residual of the LSE model
        absr = np.abs(r)
        huber = np.where(absr <= delta, 0.5 * r**2, delta * (absr - 0.5 * delta))
        dr = np.clip(r, -delta, delta)  # d huber / d r
        w = ez / total * dr  # softmax weights = d LSE / d term, times d huber / d r
        grad = np.empty_like(theta)
        grad[0] = w[0].sum()
        for i in range(len(xs)):
            grad[1 + 2 * i] = w[1 + i].sum()
            grad[2 + 2 * i] = -(w[1 + i] * u[i]).sum()
        scale = 1.0 / (y.size * delta)
        return float(huber.sum() * scale), grad * scale

    starts = _grid_starts(u, log_y, delta, n_starts, bounds)
    if init is not None and np.all(np.isfinite(init.theta)):
        starts.insert(0, np.clip(np.asarray(init.theta), [b[0] for b in bounds], [b[1] for b in bounds]))
    # L-BFGS-B calls BLAS on vectors of a handful of numbers; OpenBLAS's worker threads then spin, which
    # made each fit ~10x slower on 2 busy cores (0.44 s vs 0.04 s). One thread for the fit, then restored.
    with _blas_controller().limit(limits=1, user_api="blas"):
        results = [
            minimize(
                objective, x0, jac=True, method="L-BFGS-B", bounds=bounds,
                options={"maxiter": 2000, "ftol": 1e-13, "gtol": 1e-9},
            )
            for x0 in starts
        ]
    results = [r for r in results if np.isfinite(r.fun)]
    if not results:
        return failed("the objective was not finite at any starting point")
    best = min(results, key=lambda r: r.fun)
    theta = best.x
    problem = _check(form, theta, bounds, best, results)
    if problem:
        return failed(problem, theta, scales)
    return FitResult(
        form, params_from_theta(form, theta, scales), True, "", int(y.size), float(best.fun),
        _ranges(xs, names), tuple(map(float, theta)), scales,
    )


@cache
def _blas_controller() -> ThreadpoolController:
    """The loaded BLAS libraries, inspected once (a `threadpool_limits` per fit would re-scan them: 3 ms each)."""
    return ThreadpoolController()


def _terms(theta: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Log of each additive term: [e, a_i - s_i u_i ...], shape [n_terms + 1, n_points]."""
    rows = [np.full(u.shape[1], theta[0])]
    rows += [theta[1 + 2 * i] - theta[2 + 2 * i] * u[i] for i in range(u.shape[0])]
    return np.stack(rows)


def _bounds(y: np.ndarray, n_terms: int) -> list[tuple[float, float]]:
    """E between ~0 and the largest loss; each term at the reference scale within e^-15..e^5 of the mean loss."""
    log_mean = float(np.log(np.mean(y)))
    e_bounds = (float(np.log(np.min(y))) - 10.0, float(np.log(np.max(y))))
    return [e_bounds] + [(log_mean - 15.0, log_mean + 5.0), EXPONENT_BOUNDS] * n_terms


def _grid_starts(
    u: np.ndarray, log_y: np.ndarray, delta: float, n_starts: int, bounds: list[tuple[float, float]]
) -> list[np.ndarray]:
    """The `n_starts` best points of a grid of initial values, ranked by the Huber objective."""
    y = np.exp(log_y)
    e_grid = np.log(np.min(y) * np.array(_E_FRACTIONS))
    a_grid = np.log(np.mean(y) * np.array(_A_FRACTIONS))
    per_term = list(itertools.product(a_grid, _EXPONENT_GRID))
    grid = np.array(
        [[e, *itertools.chain.from_iterable(terms)] for e in e_grid for terms in itertools.product(per_term, repeat=u.shape[0])]
    )  # [n_grid, n_params]
    grid = np.clip(grid, [b[0] for b in bounds], [b[1] for b in bounds])
    z = [np.broadcast_to(grid[:, :1], (grid.shape[0], u.shape[1]))]
    z += [grid[:, 1 + 2 * i, None] - grid[:, 2 + 2 * i, None] * u[i][None, :] for i in range(u.shape[0])]
    r = np.abs(logsumexp(np.stack(z), axis=0) - log_y)  # [n_grid, n_points]
    values = np.where(r <= delta, 0.5 * r**2, delta * (r - 0.5 * delta)).sum(axis=1)
    order = np.argsort(values, kind="stable")[:n_starts]
    return [grid[i] for i in order]


def _check(form: str, theta: np.ndarray, bounds, best, results) -> str:
    """Reason the optimum cannot be trusted, or "" when it can (`BOUND_TOLERANCE` decides "at a bound").

    With delta=1e-3 the Huber objective is nearly non-smooth, so L-BFGS-B's line search sometimes
    stops ("ABNORMAL") at a kink right at the optimum. The best point is accepted when it reported
    success itself or a start that did report success reached an objective within 1% of it.
    """
    names = ["log E"] + [n for i in range(len(theta) // 2) for n in (f"log {PARAM_NAMES[form][1 + 2 * i]}", PARAM_NAMES[form][2 + 2 * i])]
    confirmed = [r for r in results if r.success and r.fun <= best.fun + 0.01 * abs(best.fun) + 1e-12]
    if not confirmed:
        return f"L-BFGS-B did not converge ({best.message}); add runs or check the data for outliers"
    for name, value, (lo, hi) in zip(names, theta, bounds, strict=True):
        tol = BOUND_TOLERANCE * (hi - lo)
        if value <= lo + tol or value >= hi - tol:
            side = "lower" if value <= lo + tol else "upper"
            hint = _bound_hint(name, side, is_exponent=name in PARAM_NAMES[form])
            return (
                f"{name} stuck at its {side} bound ({value:.3g}): {hint}; the fit is not meaningful "
                "(more scales or a wider compute range would help)"
            )
    return ""


def _bound_hint(name: str, side: str, *, is_exponent: bool) -> str:
    """What a parameter stuck at a bound says about the data."""
    if name == "log E":
        return "the data show no loss floor (E -> 0)" if side == "lower" else "the loss does not fall with scale"
    if is_exponent:
        return ("the loss does not decrease as this variable grows" if side == "lower"
                else "the loss falls too abruptly (or not monotonically) to be a power law")
    return "the size of this term is degenerate"


def _ranges(xs: list[np.ndarray], names: list[str]) -> dict[str, tuple[float, float]]:
    ok = [x[np.isfinite(x)] for x in xs]
    return {n: (float(x.min()), float(x.max())) if x.size else (float("nan"), float("nan")) for n, x in zip(names, ok, strict=True)}
