"""Which runs form which family, and the stability/plasticity fits of each family.

Two ways to spend more compute per new token (x = ``flops_per_new_token`` = final flops_train /
tokens_new, which is 6N/(1-alpha) plus Reptile's small share):

- the **no-replay family**: alpha = 0 and Reptile off, varying the model size ("a bigger model");
- a **replay family**: one model size and one Reptile setting, varying alpha ("more replay").

Each family gets an inverse power-law fit of retained loss (stability) and of learned loss
(plasticity) against x, with intervals from `analysis.bootstrap.residual_bootstrap` (none when a
scale has a single run).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

from analysis.bootstrap import Bootstrap, residual_bootstrap
from analysis.fingerprints import check_same_evaluation
from analysis.law_form import FLOOR_FORM, PURE_FORM, choose_law, refit_like
from analysis.powerlaw import PURE, FitResult

X_COL = "flops_per_new_token"
METRICS = ("retained_loss", "learned_loss")
METRIC_WORDS = {"retained_loss": "retained loss", "learned_loss": "learned loss", "forgetting": "forgetting"}
NO_REPLAY = "no replay (model size)"


@dataclass(frozen=True)
class FamilyFit:
    """A fit of one metric against FLOPs per new token for one family of runs."""

    family: str
    metric: str
    x_col: str
    """Column of the runs table used as x (FLOPs per new token unless stated)."""
    points: pd.DataFrame
    """Columns run_id, x, y, stratum (the model size for the no-replay family, alpha otherwise)."""
    fit: FitResult
    boot: Bootstrap | None
    eval_fingerprint: str = "unknown"
    """The evaluation fingerprint all the family's runs share ("unknown": runs without one)."""
    law: str = ""
    """Which form was chosen and why (`analysis.law_form.choose_law`)."""

    @property
    def name(self) -> str:
        return f"{self.family} / {self.metric}"


def reptile_key(row: pd.Series) -> tuple[int, float]:
    """(k, eps) with Reptile on, (0, 1.0) when it is off (k=0 or eps=1 are the same no-op)."""
    return (int(row["k"]), float(row["eps"])) if bool(row["reptile"]) else (0, 1.0)


def setting_label(model: str, alpha: float, k: int, eps: float) -> str:
    """Human-readable name of a training setting, e.g. 'm3, alpha=0.25, Reptile k=500 eps=0.1'."""
    label = f"{model}, alpha={alpha:g}"
    if k > 0 and eps < 1:
        label += f", Reptile k={k} eps={eps:g}"
    return label


def add_setting_columns(runs: pd.DataFrame) -> pd.DataFrame:
    """Copy of `runs` with `k_eff`, `eps_eff` (Reptile off -> 0, 1.0) and a `setting` label."""
    out = runs.copy()
    keys = [reptile_key(r) for _, r in out.iterrows()]
    out["k_eff"] = [k for k, _ in keys]
    out["eps_eff"] = [e for _, e in keys]
    out["setting"] = [setting_label(m, a, k, e) for m, a, (k, e) in zip(out["model"], out["alpha"], keys, strict=True)]
    return out


def no_replay_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """The 'bigger model, no replay' family: alpha = 0 and Reptile off."""
    return runs[(runs["alpha"] == 0) & (~runs["reptile"].astype(bool))]


def replay_families(runs: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """'Same model, more replay' families: per model and Reptile setting, the runs over alpha (with alpha=0).

    Only families with at least two distinct alpha values, one of them > 0, are returned.
    """
    runs = add_setting_columns(runs)
    families: dict[str, pd.DataFrame] = {}
    for (model, k, eps), grp in runs.groupby(["model", "k_eff", "eps_eff"], sort=True):
        if grp["alpha"].nunique() >= 2 and (grp["alpha"] > 0).any():
            name = f"replay, {model}" + (f", Reptile k={k} eps={eps:g}" if k > 0 else "")
            families[name] = grp
    return families


def fit_family(
    family: str,
    runs: pd.DataFrame,
    metric: str,
    *,
    stratum: str,
    n_boot: int,
    x_col: str = X_COL,
    seed: int = 0,
    progress: Callable[[int], None] | None = None,
) -> FamilyFit:
    """Fit `metric` ~ E + A x^-b over the family's runs (x = `x_col`), with `n_boot` bootstrap refits (0: none).

    `stratum` is the column naming each run's scale; a scale with one run gives no interval (`boot.reason`).

    Raises `analysis.fingerprints.MixedEvaluations` when the runs were scored on different evaluations."""
    fingerprint = check_same_evaluation(runs, f"fit {METRIC_WORDS.get(metric, metric)} for '{family}'")
    pts = pd.DataFrame(
        {"run_id": runs["run_id"].to_numpy(), "x": runs[x_col].to_numpy(dtype=float),
         "y": runs[metric].to_numpy(dtype=float), "stratum": runs[stratum].to_numpy()}
    ).reset_index(drop=True)
    x, y = pts["x"].to_numpy(), pts["y"].to_numpy()
    choice = choose_law(x, y)  # with a floor, or the pure law when the data show none (analysis.law_form)
    fit, refit = choice.fit, refit_like(choice.fit.form)
    boot = None
    if fit.converged and n_boot > 0:
        boot = residual_bootstrap(
            lambda y_star, full: refit(x, y_star, full),
            fit, (x,), y, strata=pts["stratum"].to_numpy(), n_boot=n_boot, seed=seed,
            what="model size" if stratum == "model" else stratum, progress=progress,
        )
    return FamilyFit(family, metric, x_col, pts, fit, boot, fingerprint, choice.why)


def fit_summary(ff: FamilyFit) -> dict:
    """JSON-ready description of a family fit: parameters, intervals, status."""
    ci = ff.boot.ci() if ff.boot is not None else {}
    return {
        "family": ff.family,
        "metric": ff.metric,
        "x": ff.x_col,
        "form": PURE_FORM if ff.fit.form == PURE else FLOOR_FORM,
        "law_choice": ff.law,
        "converged": ff.fit.converged,
        "reason": ff.fit.reason,
        "n_runs": int(ff.points.shape[0]),
        "x_range": list(ff.fit.ranges["C"]),
        "params": {k: _json_float(v) for k, v in ff.fit.params.items()},
        "ci95": {k: [_json_float(a), _json_float(b)] for k, (a, b) in ci.items()},
        "n_boot": 0 if ff.boot is None else int(ff.boot.thetas.shape[0]),
        "n_boot_failed": 0 if ff.boot is None else ff.boot.n_failed,
        "interval": "none (no bootstrap)" if ff.boot is None else (ff.boot.reason or "residual bootstrap, redrawn noise"),
        "noise_sigma": None if ff.boot is None else _json_float(ff.boot.noise),
        "objective": _json_float(ff.fit.objective),
        "eval_fingerprint": ff.eval_fingerprint,
    }


def _json_float(v: float) -> float | None:
    return None if v is None or not math.isfinite(v) else float(v)

