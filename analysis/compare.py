"""Replay versus scaling: the compute-equivalent multiplier of every replay/Reptile setting.

For a setting (model, alpha, Reptile k/eps) with mean loss L over its seeds and mean FLOPs per
new token c_used, the no-replay family's fitted curve is inverted: c_needed = C such that
E + A C^-b = L, the compute per token a model without replay would need to reach the same loss.

    multiplier = c_needed / c_used

Above 1, replay is the cheaper way to that loss ("better than scaling"); below 1 a bigger model
would have been cheaper. The 95% interval comes from a joint bootstrap: each replicate uses one
bootstrap refit of the no-replay curve (runs resampled within model sizes) and a resample of the
setting's own runs. A c_needed outside the compute range the no-replay runs cover is an
extrapolation and is flagged; L at or below the fitted floor E gives c_needed = inf.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from analysis.bootstrap import percentile_interval
from analysis.families import METRIC_WORDS, X_COL, FamilyFit, add_setting_columns
from analysis.fingerprints import COLUMN, check_same_evaluation
from analysis.powerlaw import invert_power_law


@dataclass(frozen=True)
class Comparison:
    """One setting compared with the no-replay family on one metric."""

    setting: str
    model: str
    alpha: float
    k: int
    eps: float
    metric: str
    n_runs: int
    loss: float
    flops_used: float
    """Mean FLOPs per new token of the setting's runs."""
    flops_needed: float
    """FLOPs per new token the no-replay curve needs for the same loss (inf: never)."""
    multiplier: float
    ci_low: float
    ci_high: float
    extrapolated: bool
    verdict: str
    """'better than scaling', 'worse than scaling', 'no clear difference from scaling' or 'undetermined'."""
    sentence: str

    def to_dict(self) -> dict:
        return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in asdict(self).items()}


def compare_with_scaling(runs: pd.DataFrame, no_replay: FamilyFit, *, seed: int = 0) -> list[Comparison]:
    """Compare every setting of `runs` that is not in the no-replay family (alpha > 0 or Reptile on).

    `runs` are usable runs of one task sequence; `no_replay` is the no-replay family's fit of the
    metric to compare on (its bootstrap, if any, gives the interval). Raises
    `analysis.fingerprints.MixedEvaluations` when the settings' runs and the fit's runs were scored on
    different evaluations.
    """
    runs = add_setting_columns(runs)
    others = runs[(runs["alpha"] > 0) | runs["reptile"].astype(bool)]
    fitted = pd.DataFrame({"run_id": no_replay.points["run_id"], COLUMN: no_replay.eval_fingerprint})
    everyone = pd.concat([others.reindex(columns=["run_id", COLUMN]), fitted], ignore_index=True)
    check_same_evaluation(everyone.drop_duplicates("run_id"),
                          f"compare replay with scaling on {METRIC_WORDS[no_replay.metric]}")
    out: list[Comparison] = []
    rng = np.random.default_rng(seed)
    for (model, alpha, k, eps), grp in others.groupby(["model", "alpha", "k_eff", "eps_eff"], sort=True):
        out.append(_compare_setting(grp, str(model), float(alpha), int(k), float(eps), no_replay, rng))
    return out


def _compare_setting(
    grp: pd.DataFrame, model: str, alpha: float, k: int, eps: float, ff: FamilyFit, rng: np.random.Generator
) -> Comparison:
    metric = ff.metric
    losses = grp[metric].to_numpy(dtype=float)
    used_all = grp[X_COL].to_numpy(dtype=float)
    loss, used = float(losses.mean()), float(used_all.mean())
    label = grp["setting"].iloc[0]
    common = dict(setting=label, model=model, alpha=alpha, k=k, eps=eps, metric=metric, n_runs=len(grp), loss=loss, flops_used=used)
    if not ff.fit.converged:
        sentence = f"{label}: undetermined — the no-replay fit of {METRIC_WORDS[metric]} failed ({ff.fit.reason})."
        nan = math.nan
        return Comparison(**common, flops_needed=nan, multiplier=nan, ci_low=nan, ci_high=nan,
                          extrapolated=False, verdict="undetermined", sentence=sentence)
    needed = float(ff.fit.inverse(loss))
    mult = needed / used
    lo_x, hi_x = ff.fit.ranges["C"]
    extrapolated = not (lo_x <= needed <= hi_x)
    ci = (math.nan, math.nan)
    if ff.boot is not None and ff.boot.ok.shape[0] > 0:
        thetas = ff.boot.ok
        mults = np.empty(thetas.shape[0])
        for i, theta in enumerate(thetas):
            pick = rng.integers(0, len(losses), size=len(losses))
            mults[i] = float(invert_power_law(theta, ff.boot.scales[0], losses[pick].mean())) / used_all[pick].mean()
        ci = percentile_interval(mults)
    verdict = _verdict(mult, ci)
    sentence = _sentence(label, alpha, k > 0, metric, mult, ci, verdict, extrapolated, needed, (lo_x, hi_x))
    return Comparison(**common, flops_needed=needed, multiplier=mult, ci_low=ci[0], ci_high=ci[1],
                      extrapolated=extrapolated, verdict=verdict, sentence=sentence)


def _verdict(mult: float, ci: tuple[float, float]) -> str:
    lo, hi = ci
    if math.isnan(lo):
        return "better than scaling (no interval)" if mult > 1 else "worse than scaling (no interval)"
    if lo > 1:
        return "better than scaling"
    if hi < 1:
        return "worse than scaling"
    return "no clear difference from scaling"


def _fmt_mult(m: float) -> str:
    return "unbounded" if math.isinf(m) else f"{m:.3g}x"


def _sentence(
    label: str, alpha: float, reptile: bool, metric: str, mult: float, ci: tuple[float, float],
    verdict: str, extrapolated: bool, needed: float, x_range: tuple[float, float],
) -> str:
    method = "replay + Reptile" if alpha > 0 and reptile else ("Reptile" if reptile else "replay")
    words = METRIC_WORDS[metric]
    if math.isinf(needed):
        body = (f"{method} reaches a {words} below the floor E of the no-replay fit: no model size "
                "would match it by the fitted curve")
    else:
        body = f"{method} reaches the {words} of a no-replay model that would use {_fmt_mult(mult)} its compute"
    if not math.isnan(ci[0]):
        body += f" (95% CI {_fmt_mult(ci[0])} to {_fmt_mult(ci[1])})"
    text = f"{label}: {body}: {verdict}"
    if 0 < ci[0] <= 1 <= ci[1]:
        text += " (the interval includes 1)"
    if extrapolated:
        text += (f". Extrapolated: the matching no-replay compute ({needed:.3g} FLOPs/token) is outside the observed "
                 f"range {x_range[0]:.3g}-{x_range[1]:.3g}; treat with caution")
    return text + "."
