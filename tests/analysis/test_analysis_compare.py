"""Replay versus scaling on the synthetic sweep, whose true compute multipliers are known."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import synthetic_runs as sr

from analysis.compare import compare_with_scaling
from analysis.families import NO_REPLAY, fit_family, no_replay_runs, replay_families


def _cmp(report, metric: str, alpha: float, k: int = 0, eps: float = 1.0):
    hits = [c for c in report.comparisons if c.metric == metric and c.alpha == alpha and c.k == k and c.eps == eps]
    assert len(hits) == 1
    return hits[0]


@pytest.mark.parametrize(
    ("metric", "alpha", "k", "eps", "truth", "verdict"),
    [
        ("retained_loss", 0.25, 0, 1.0, sr.RETAINED_MULT[0.25], "better than scaling"),
        ("retained_loss", 0.5, 0, 1.0, sr.RETAINED_MULT[0.5], "worse than scaling"),
        ("retained_loss", 0.0, 5, 0.1, sr.REPTILE_MULT[(5, 0.1)], "better than scaling"),
        ("retained_loss", 0.25, 5, 0.1, sr.RETAINED_MULT[0.25] * sr.REPTILE_MULT[(5, 0.1)], "better than scaling"),
        ("learned_loss", 0.25, 0, 1.0, sr.LEARNED_MULT[0.25], "worse than scaling"),
        ("learned_loss", 0.5, 0, 1.0, sr.LEARNED_MULT[0.5], "worse than scaling"),
    ],
)
def test_multiplier_recovers_truth(report, metric, alpha, k, eps, truth, verdict) -> None:
    c = _cmp(report, metric, alpha, k, eps)
    assert c.multiplier == pytest.approx(truth, rel=0.1)
    assert c.ci_low <= c.multiplier <= c.ci_high
    assert c.verdict == verdict
    assert not c.extrapolated
    assert f"alpha={alpha:g}" in c.sentence and verdict in c.sentence


def test_used_flops_include_replay_cost(report) -> None:
    c = _cmp(report, "retained_loss", 0.5)
    assert c.flops_used == pytest.approx(2 * 6 * sr.MODELS["m3"])
    assert c.n_runs == 3


def test_extrapolation_and_unreachable_loss_are_flagged(collection) -> None:
    usable = collection.runs[collection.runs["usable"]]
    nr = no_replay_runs(usable)
    ff = fit_family(NO_REPLAY, nr, "retained_loss", stratum="model", n_boot=0)
    fake = nr[nr["model"] == "m5"].copy()
    fake["alpha"], fake["run_id"] = 0.25, fake["run_id"] + "-fake"
    fake["retained_loss"] = ff.fit.params["E"] + 0.05  # far beyond the largest model
    (c,) = compare_with_scaling(fake, ff)
    assert c.extrapolated and "Extrapolated" in c.sentence
    fake["retained_loss"] = ff.fit.params["E"] - 0.1  # below the fitted floor
    (c,) = compare_with_scaling(fake, ff)
    assert math.isinf(c.multiplier) and "no model size" in c.sentence


def test_failed_family_fit_gives_undetermined(collection) -> None:
    usable = collection.runs[collection.runs["usable"]]
    nr = no_replay_runs(usable)
    ff = fit_family(NO_REPLAY, nr[nr["model"].isin(["m1", "m2"])], "retained_loss", stratum="model", n_boot=5)
    assert not ff.fit.converged and ff.boot is None
    comps = compare_with_scaling(usable, ff)
    assert comps and all(c.verdict == "undetermined" and "too few points" in c.sentence for c in comps)


def test_replay_families_group_by_model_and_reptile(collection) -> None:
    usable = collection.runs[collection.runs["usable"]]
    fams = replay_families(usable)
    assert set(fams) == {"replay, m3", "replay, m3, Reptile k=5 eps=0.1", "replay, m3, Reptile k=10 eps=0.1", "replay, m3, Reptile k=5 eps=0.5"}
    plain = fams["replay, m3"]
    assert sorted(plain["alpha"].unique()) == [0.0, 0.25, 0.5]
    assert not plain["reptile"].any()


def test_replay_family_fit_recovers_a_power_law() -> None:
    """A replay family whose losses do follow a power law in FLOPs/token is fitted like any other."""
    alphas = np.repeat([0.0, 0.25, 0.5, 0.75], 2)
    x = 6 * 5e7 / (1 - alphas)
    runs = pd.DataFrame({"run_id": [f"r{i}" for i in range(8)], "alpha": alphas, "flops_per_new_token": x,
                         "retained_loss": 2.3 + 250 * x**-0.28})
    ff = fit_family("replay, m3", runs, "retained_loss", stratum="alpha", n_boot=10)
    assert ff.fit.converged
    assert ff.fit.params["b"] == pytest.approx(0.28, rel=1e-3)
    # Exact losses show no seed-to-seed noise: no interval rather than a zero-width one.
    assert ff.boot is not None and not ff.boot.has_interval and "no noise" in ff.boot.reason


def _one_seed(usable: pd.DataFrame) -> pd.DataFrame:
    return usable[usable["run_id"].str.contains("seed=0")]


def test_one_run_per_size_gives_no_interval_and_no_verdict(collection) -> None:
    """A true multiplier of 1 with one seed per size once read "0.967x (95% CI 0.967x to 0.967x): worse than scaling"."""
    usable = _one_seed(collection.runs[collection.runs["usable"]])
    nr = no_replay_runs(usable)
    assert nr.groupby("model").size().max() == 1
    ff = fit_family(NO_REPLAY, nr, "retained_loss", stratum="model", n_boot=20)
    assert ff.fit.converged and not ff.boot.has_interval
    assert "one run at model size" in ff.boot.reason
    comps = compare_with_scaling(usable, ff)
    assert comps
    for c in comps:
        assert math.isnan(c.ci_low) and math.isnan(c.ci_high)
        assert c.verdict == "no verdict"
        assert "better than" not in c.sentence and "worse than" not in c.sentence
        assert "at least 2 seeds per model size" in c.sentence


def test_a_setting_with_one_run_gets_no_interval(collection) -> None:
    usable = collection.runs[collection.runs["usable"]]
    nr = no_replay_runs(usable)
    ff = fit_family(NO_REPLAY, nr, "retained_loss", stratum="model", n_boot=20)
    single = usable[(usable["alpha"] == 0.25) & ~usable["reptile"].astype(bool)].head(1)
    (c,) = compare_with_scaling(single, ff)
    assert c.verdict == "no verdict" and math.isnan(c.ci_low)
    assert "this setting has 1 run" in c.interval_note


def test_nan_loss_is_undetermined_never_infinite(collection) -> None:
    usable = collection.runs[collection.runs["usable"]]
    nr = no_replay_runs(usable)
    ff = fit_family(NO_REPLAY, nr, "retained_loss", stratum="model", n_boot=20)
    bad = usable[(usable["alpha"] == 0.25) & ~usable["reptile"].astype(bool)].copy()
    bad.loc[bad.index[0], "retained_loss"] = float("nan")
    (c,) = compare_with_scaling(bad, ff)
    assert c.verdict == "undetermined" and math.isnan(c.multiplier)
    assert "not a finite" in c.sentence
