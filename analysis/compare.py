"""Replay versus scaling: the compute-equivalent multiplier of every replay/Reptile setting.

For a setting (model, alpha, Reptile k/eps) with mean loss L over its seeds and mean FLOPs per
new token c_used, the no-replay family's fitted curve is inverted: c_needed = C such that
E + A C^-b = L, the compute per token a model without replay would need to reach the same loss.

    multiplier = c_needed / c_used

Above 1, replay is the cheaper way to that loss ("better than scaling"); below 1 a bigger model
would have been cheaper. The 95% interval pairs each bootstrap refit of the no-replay curve
(`analysis.bootstrap.residual_bootstrap`) with a redraw of the setting's mean loss,
L* = L exp(sigma* z / sqrt(n)), where sigma is the relative seed-to-seed noise pooled over every
setting with >= 2 runs (sum of within-setting squares of log-losses over their degrees of
freedom) and sigma* its chi-square redraw, as for the curve. Its coverage is simulated in
`analysis.coverage` (docs/analysis.md).

No interval, and so no better/worse verdict ("no verdict"), when the curve has none (a model size
with one run), the setting has a single run, or no setting shows its noise. A NaN/inf loss gives
"undetermined", never a multiplier. A c_needed outside the compute range the no-replay runs cover
is an extrapolation and is flagged; L at or below the fitted floor E gives c_needed = inf.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from analysis.bootstrap import CI_LEVEL, MIN_RUNS_PER_STRATUM, percentile_interval, redraw_noise
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
    """'better than scaling', 'worse than scaling', 'no clear difference from scaling', 'no verdict' (no
    interval) or 'undetermined' (no usable fit or loss)."""
    sentence: str
    interval_note: str = ""
    """Why there is no interval ("" when there is one)."""

    def to_dict(self) -> dict:
        return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in asdict(self).items()}


def compare_with_scaling(
    runs: pd.DataFrame, no_replay: FamilyFit, *, seed: int = 0, level: float = CI_LEVEL
) -> list[Comparison]:
    """Compare every setting of `runs` that is not in the no-replay family (alpha > 0 or Reptile on).

    `runs` are usable runs of one task sequence; `no_replay` is the no-replay family's fit of the
    metric to compare on (its bootstrap, if any, gives the interval, at `level`). Raises
    `analysis.fingerprints.MixedEvaluations` when the settings' runs and the fit's runs were scored on
    different evaluations.
    """
    runs = add_setting_columns(runs)
    others = runs[(runs["alpha"] > 0) | runs["reptile"].astype(bool)]
    fitted = pd.DataFrame({"run_id": no_replay.points["run_id"], COLUMN: no_replay.eval_fingerprint})
    everyone = pd.concat([others.reindex(columns=["run_id", COLUMN]), fitted], ignore_index=True)
    check_same_evaluation(everyone.drop_duplicates("run_id"),
                          f"compare replay with scaling on {METRIC_WORDS[no_replay.metric]}")
    noise = pooled_noise(runs, no_replay.metric)
    out: list[Comparison] = []
    rng = np.random.default_rng(seed)
    for (model, alpha, k, eps), grp in others.groupby(["model", "alpha", "k_eff", "eps_eff"], sort=True):
        out.append(_compare_setting(grp, str(model), float(alpha), int(k), float(eps), no_replay, noise, rng, level))
    return out


def pooled_noise(runs: pd.DataFrame, metric: str) -> tuple[float, int]:
    """(sigma, df): relative seed-to-seed noise of `metric`, pooled over the settings with >= 2 finite runs.

    sigma^2 = sum over settings of the squared deviations of log(metric) from the setting's mean,
    divided by df = sum of (runs - 1). (NaN, 0) when no setting has two runs.
    """
    runs = add_setting_columns(runs) if "setting" not in runs else runs
    ss, df = 0.0, 0
    for _, grp in runs.groupby("setting"):
        v = np.log(grp[metric].to_numpy(dtype=float))
        v = v[np.isfinite(v)]
        if v.size >= 2:
            ss += float(np.sum((v - v.mean()) ** 2))
            df += v.size - 1
    return (float(np.sqrt(ss / df)), df) if df else (math.nan, 0)


def _compare_setting(
    grp: pd.DataFrame, model: str, alpha: float, k: int, eps: float, ff: FamilyFit,
    noise: tuple[float, int], rng: np.random.Generator, level: float,
) -> Comparison:
    metric = ff.metric
    losses = grp[metric].to_numpy(dtype=float)
    used = float(grp[X_COL].to_numpy(dtype=float).mean())
    loss = float(losses.mean())
    label = grp["setting"].iloc[0]
    common = dict(setting=label, model=model, alpha=alpha, k=k, eps=eps, metric=metric, n_runs=len(grp), loss=loss, flops_used=used)
    nan = math.nan

    def undetermined(why: str) -> Comparison:
        return Comparison(**common, flops_needed=nan, multiplier=nan, ci_low=nan, ci_high=nan, extrapolated=False,
                          verdict="undetermined", sentence=f"{label}: undetermined — {why}.")

    if not ff.fit.converged:
        return undetermined(f"the no-replay fit of {METRIC_WORDS[metric]} failed ({ff.fit.reason})")
    if not (math.isfinite(loss) and math.isfinite(used) and used > 0):
        return undetermined(f"its {METRIC_WORDS[metric]} ({loss:g}) or FLOPs per token ({used:g}) is not a finite "
                            "positive number (a diverged run?); drop or rerun it")
    needed = float(ff.fit.inverse(loss))
    mult = needed / used
    lo_x, hi_x = ff.fit.ranges["C"]
    extrapolated = not (lo_x <= needed <= hi_x)
    note = _no_interval_reason(ff, len(grp), noise)
    ci = (nan, nan)
    if not note:
        sigma, df = noise
        thetas = ff.boot.ok
        draws = loss * np.exp(np.array([redraw_noise(sigma, df, rng) for _ in thetas]) * rng.standard_normal(len(thetas))
                              / math.sqrt(len(grp)))
        mults = np.array([float(invert_power_law(t, ff.boot.scales[0], d)) for t, d in zip(thetas, draws, strict=True)]) / used
        ci = percentile_interval(mults, level)
    verdict = _verdict(mult, ci)
    sentence = _sentence(label, alpha, k > 0, metric, mult, ci, verdict, extrapolated, needed, (lo_x, hi_x), note, level)
    return Comparison(**common, flops_needed=needed, multiplier=mult, ci_low=ci[0], ci_high=ci[1],
                      extrapolated=extrapolated, verdict=verdict, sentence=sentence, interval_note=note)


def _no_interval_reason(ff: FamilyFit, n_runs: int, noise: tuple[float, int]) -> str:
    """Why the multiplier gets no interval ("" when it gets one)."""
    if ff.boot is None:
        return "no interval: the no-replay fit was not bootstrapped (n_boot=0)"
    if not ff.boot.has_interval:
        return ff.boot.reason or "no interval: the no-replay fit has no interval"
    if n_runs < MIN_RUNS_PER_STRATUM:
        return (f"no interval: this setting has {n_runs} run, so its own noise is unknown; "
                f"run at least {MIN_RUNS_PER_STRATUM} seeds (3 recommended)")
    if noise[1] < 1:
        return "no interval: no setting has two runs, so the seed-to-seed noise is unknown"
    return ""


def _verdict(mult: float, ci: tuple[float, float]) -> str:
    lo, hi = ci
    if math.isnan(mult):
        return "undetermined"
    if math.isnan(lo):
        return "no verdict"
    if lo > 1:
        return "better than scaling"
    if hi < 1:
        return "worse than scaling"
    return "no clear difference from scaling"


def _fmt_mult(m: float) -> str:
    return "unbounded" if math.isinf(m) else f"{m:.3g}x"


def _sentence(
    label: str, alpha: float, reptile: bool, metric: str, mult: float, ci: tuple[float, float],
    verdict: str, extrapolated: bool, needed: float, x_range: tuple[float, float], note: str, level: float,
) -> str:
    method = "replay + Reptile" if alpha > 0 and reptile else ("Reptile" if reptile else "replay")
    words = METRIC_WORDS[metric]
    if math.isinf(needed):
        body = (f"{method} reaches a {words} below the floor E of the no-replay fit: no model size "
                "would match it by the fitted curve")
    else:
        body = f"{method} reaches the {words} of a no-replay model that would use {_fmt_mult(mult)} its compute"
    if not math.isnan(ci[0]):
        body += f" ({100 * level:g}% CI {_fmt_mult(ci[0])} to {_fmt_mult(ci[1])})"
    text = f"{label}: {body}: {verdict}"
    if note:
        text += f" ({note})"
    if 0 < ci[0] <= 1 <= ci[1]:
        text += " (the interval includes 1)"
    if extrapolated:
        text += (f". Extrapolated: the matching no-replay compute ({needed:.3g} FLOPs/token) is outside the observed "
                 f"range {x_range[0]:.3g}-{x_range[1]:.3g}; treat with caution")
    return text + "."


def summary_lines(comparisons: list[Comparison]) -> list[str]:
    """One sentence per comparison, except that settings left undetermined for one reason share one line."""
    lines: list[str] = []
    undetermined: dict[str, list[str]] = {}
    for c in comparisons:
        if c.verdict == "undetermined":
            undetermined.setdefault(c.sentence.split(" — ", 1)[-1], []).append(c.setting)
        else:
            lines.append(c.sentence)
    for why, settings in undetermined.items():
        lines.append(f"Undetermined for {len(settings)} setting(s) ({'; '.join(settings)}): {why}")
    return lines
