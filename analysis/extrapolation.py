"""Does the law predict? Leave the largest model size out, refit, and compare the prediction with what was measured.

The paper's own open question is whether its fits extrapolate. Every study here answers it for every no-replay fit
with at least `MIN_SIZES` model sizes: the family is refitted (same law choice, `analysis.law_form`, and the same
bootstrap, `analysis.families.fit_family`) without the size of the largest mean FLOPs per new token, and the refit's
prediction at that size's mean FLOPs per token is set against the size's measured mean loss over its seeds:

    error = predicted - measured  (nats; positive: the largest size did better than the law foretold)

Its interval (95%, or the level asked for) pairs each bootstrap refit's prediction with a draw of the measured mean,
mean + se t_{n-1} (se: the seeds' standard error), and takes percentiles of the differences. The law **predicts** the
largest size when that interval contains 0; it **over-predicts** (the size did better) when the interval lies above 0
and **under-predicts** when below. Without an interval (one seed at some size, no bootstrap) there is no verdict.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from analysis.bootstrap import CI_LEVEL, percentile_interval
from analysis.families import METRIC_WORDS, FamilyFit, fit_family
from analysis.powerlaw import predict_theta

MIN_SIZES = 4
"""Sizes a fit needs before one is left out: the refit keeps at least 3, the fewest a law is fitted on."""
PREDICTS, OVER, UNDER, NO_VERDICT, NO_FIT = (
    "predicts", "over-predicts", "under-predicts", "no verdict", "no fit without the largest size")


@dataclass(frozen=True)
class Extrapolation:
    """A fit's prediction of its largest size from the others, against the measurement."""

    family: str
    metric: str
    n_sizes: int
    held_out: str
    """The size left out (the one of the largest mean FLOPs per new token)."""
    x: float
    """Its mean FLOPs per new token, where the refit predicts."""
    measured: float
    predicted: float
    error: float
    """predicted - measured (nats)."""
    ci_low: float
    ci_high: float
    verdict: str
    law: str
    """The refit's form and why it was chosen."""
    sentence: str

    def to_dict(self) -> dict:
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in asdict(self).items()}


def leave_largest_out(ff: FamilyFit, *, n_boot: int, seed: int = 0, level: float = CI_LEVEL) -> Extrapolation | None:
    """The leave-largest-out check of `ff` (a fit whose strata are model sizes); None with fewer than `MIN_SIZES`."""
    pts = ff.points
    order = pts.groupby("stratum")["x"].mean().sort_values()
    if order.size < MIN_SIZES:
        return None
    largest = order.index[-1]
    kept, held = pts[pts["stratum"] != largest], pts[pts["stratum"] == largest]
    runs = pd.DataFrame({"run_id": kept["run_id"], ff.x_col: kept["x"], ff.metric: kept["y"], "model": kept["stratum"],
                         "eval_fingerprint": None if ff.eval_fingerprint == "unknown" else ff.eval_fingerprint})
    refit = fit_family(ff.family, runs, ff.metric, stratum="model", n_boot=n_boot, x_col=ff.x_col, seed=seed)
    x, y = float(held["x"].mean()), held["y"].to_numpy(dtype=float)
    measured = float(y.mean())
    nan = math.nan
    common = dict(family=ff.family, metric=ff.metric, n_sizes=int(order.size), held_out=str(largest), x=x,
                  measured=measured, law=refit.law)
    words = f"{METRIC_WORDS.get(ff.metric, ff.metric)} of {largest} ('{ff.family}')"
    if not refit.fit.converged:
        return Extrapolation(**common, predicted=nan, error=nan, ci_low=nan, ci_high=nan, verdict=NO_FIT,
                             sentence=f"{words}: no prediction, the fit without it failed ({refit.fit.reason}).")
    predicted = float(refit.fit.predict(x))
    error = predicted - measured
    ci = (nan, nan)
    if refit.boot is not None and refit.boot.has_interval and y.size >= 2 and y.std(ddof=1) > 0:
        rng = np.random.default_rng(seed)
        preds = predict_theta(refit.boot.ok, refit.boot.scales, np.array([x]))[:, 0]
        draws = measured + y.std(ddof=1) / math.sqrt(y.size) * rng.standard_t(y.size - 1, preds.size)
        ci = percentile_interval(preds - draws, level)
    verdict = NO_VERDICT if math.isnan(ci[0]) else PREDICTS if ci[0] <= 0 <= ci[1] else OVER if ci[0] > 0 else UNDER
    interval = "no interval" if math.isnan(ci[0]) else f"{100 * level:g}% CI {ci[0]:+.3g} to {ci[1]:+.3g}"
    sentence = (f"{words}: measured {measured:.4g}, predicted {predicted:.4g} by the fit of the {order.size - 1} smaller "
                f"sizes ({refit.law}); error {error:+.3g} nats, {100 * error / measured:+.2g}% ({interval}): {verdict}.")
    return Extrapolation(**common, predicted=predicted, error=error, ci_low=ci[0], ci_high=ci[1], verdict=verdict,
                         sentence=sentence)


def predictions(fits: list[FamilyFit], *, n_boot: int, seed: int = 0) -> list[Extrapolation]:
    """The check for every fit whose strata are model sizes (the no-replay family) and that has `MIN_SIZES` of them."""
    out = []
    for ff in fits:
        if ff.points.empty or not ff.family.startswith("no replay"):
            continue
        check = leave_largest_out(ff, n_boot=n_boot, seed=seed)
        if check is not None:
            out.append(check)
    return out


def section(checks: list[Extrapolation]) -> list[str]:
    """The report's section "Does the law predict?" (Markdown lines)."""
    lines = ["## Does the law predict?", "",
             f"Every no-replay fit with {MIN_SIZES}+ model sizes is refitted without its largest size, and the refit's "
             "prediction of that size is set against its measured mean over seeds (`analysis/extrapolation.py`): "
             "error = predicted - measured, with a 95% interval from the refit's bootstrap and the seeds' t "
             "distribution; 'predicts' when the interval contains 0.", ""]
    if not checks:
        return lines + [f"No no-replay fit has {MIN_SIZES} or more model sizes, so none could be checked.", ""]
    return lines + [f"- {c.sentence}" for c in checks] + [""]
