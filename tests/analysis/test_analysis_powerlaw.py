"""Power-law fitting: recovery of known parameters, failure reports, bootstrap, the Chinchilla data."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.bootstrap import bootstrap_fit, percentile_interval, resample_runs
from analysis.powerlaw import fit_power_law, fit_two_variable

# shared/ lies beside the repository (developers' checkouts and CI alike).
CHINCHILLA = Path(__file__).resolve().parents[3] / "shared" / "data" / "chinchilla_svg_extracted_data.csv"
if os.environ.get("CI") == "true" and not CHINCHILLA.exists():
    raise FileNotFoundError(f"{CHINCHILLA} is missing: CI must run with shared/ beside the repository")
SIZES = 6 * np.array([2e6, 1e7, 5e7, 2.5e8, 1e9])


def _curve(c: np.ndarray, e: float = 2.3, a: float = 250.0, b: float = 0.28) -> np.ndarray:
    return e + a * c ** (-b)


def test_exact_power_law_is_recovered() -> None:
    c = np.repeat(SIZES, 2)
    res = fit_power_law(c, _curve(c))
    assert res.converged, res.reason
    assert res.params["E"] == pytest.approx(2.3, rel=1e-6)
    assert res.params["A"] == pytest.approx(250.0, rel=1e-5)
    assert res.params["b"] == pytest.approx(0.28, rel=1e-6)
    np.testing.assert_allclose(res.predict(np.array([1e8, 3e9])), _curve(np.array([1e8, 3e9])), rtol=1e-8)


def test_inverse_undoes_predict_and_is_inf_below_floor() -> None:
    c = np.repeat(SIZES, 2)
    res = fit_power_law(c, _curve(c))
    assert float(res.inverse(res.predict(4e8))) == pytest.approx(4e8, rel=1e-8)
    assert np.isinf(res.inverse(2.0))  # below E = 2.3: never reached


def test_noisy_recovery_within_tolerance() -> None:
    rng = np.random.default_rng(3)
    c = np.repeat(SIZES, 4)
    y = _curve(c) * np.exp(rng.normal(0, 0.003, c.size))
    res = fit_power_law(c, y)
    assert res.converged, res.reason
    assert res.params["E"] == pytest.approx(2.3, abs=0.1)
    assert res.params["b"] == pytest.approx(0.28, abs=0.02)


def test_huber_loss_resists_an_outlier_run() -> None:
    c = np.repeat(SIZES, 3)
    y = _curve(c)
    y[4] *= 1.5  # one broken run
    res = fit_power_law(c, y)
    assert res.converged
    assert res.params["b"] == pytest.approx(0.28, abs=0.01)


def test_two_variable_exact_recovery() -> None:
    n, d = np.meshgrid([1e7, 5e7, 2e8, 1e9, 5e9], [1e9, 5e9, 2e10, 1e11, 5e11])
    n, d = n.ravel(), d.ravel()
    y = 1.7 + 400 / n**0.34 + 1800 / d**0.28
    res = fit_two_variable(n, d, y)
    assert res.converged, res.reason
    expected = {"E": 1.7, "A": 400, "alpha": 0.34, "B": 1800, "beta": 0.28}
    for k, v in expected.items():
        assert res.params[k] == pytest.approx(v, rel=1e-3), k


@pytest.mark.parametrize(
    ("c", "y", "reason"),
    [
        (SIZES, 2 + SIZES**0.05, "does not decrease"),  # loss grows with compute
        (np.repeat(SIZES[:2], 3), _curve(np.repeat(SIZES[:2], 3)), "too few points"),
        (SIZES[:3], _curve(SIZES[:3]), "too few points"),
        (SIZES, np.array([3.0, np.nan, 2.8, 2.7, 2.6]), "non-finite"),
        (np.array([0.0, *SIZES[1:]]), _curve(SIZES), "non-positive"),
    ],
)
def test_bad_fits_report_not_converged(c, y, reason) -> None:
    res = fit_power_law(c, y)
    assert not res.converged
    assert reason in res.reason


def test_flat_loss_is_not_a_power_law() -> None:
    res = fit_power_law(SIZES, np.full(SIZES.size, 3.0))
    assert not res.converged
    assert "bound" in res.reason


def test_resample_keeps_whole_runs_and_strata() -> None:
    runs = np.array(["a", "a", "b", "b", "b", "c", "d"])
    strata = np.array([0, 0, 0, 0, 0, 1, 1])
    rng = np.random.default_rng(0)
    for _ in range(20):
        idx = resample_runs(runs, rng, strata)
        picked = runs[idx]
        for run in set(picked):
            n_points = int((runs == run).sum())
            assert (picked == run).sum() % n_points == 0  # all of a run's points, possibly repeated
        # two runs drawn from stratum 0, two from stratum 1
        assert sum((picked == r).sum() // (runs == r).sum() for r in "ab") == 2
        assert sum((picked == r).sum() for r in "cd") == 2


def test_bootstrap_interval_covers_truth() -> None:
    rng = np.random.default_rng(11)
    c = np.repeat(SIZES, 3)
    y = _curve(c) * np.exp(rng.normal(0, 0.005, c.size))
    run_ids = np.arange(c.size)
    full = fit_power_law(c, y)
    boot = bootstrap_fit(lambda i, f: fit_power_law(c[i], y[i], init=f, n_starts=2), full, run_ids,
                         strata=np.repeat(np.arange(5), 3), n_boot=60, seed=1)
    ci = boot.ci()
    for name, truth in (("E", 2.3), ("A", 250.0), ("b", 0.28)):
        lo, hi = ci[name]
        assert lo <= truth <= hi, (name, lo, hi)
        assert lo <= full.params[name] <= hi
    assert ci["b"][1] - ci["b"][0] < 0.1  # informative, not just wide
    lo_band, hi_band = boot.band(np.array([1e8]))
    assert lo_band[0] < _curve(np.array([1e8]))[0] < hi_band[0]


def test_percentile_interval_handles_infinity() -> None:
    lo, hi = percentile_interval(np.array([1.0, 2.0, 3.0, np.inf] * 10))
    assert lo == 1.0 and np.isinf(hi)


def _chinchilla() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    df = pd.read_csv(CHINCHILLA)
    df = df.sort_values("loss").iloc[:-5]  # the replication drops the 5 highest-loss points
    n = df["Model Size"].to_numpy(float)
    d = df["Training FLOP"].to_numpy(float) / (6 * n)
    return n, d, df["loss"].to_numpy(float)


@pytest.mark.skipif(not CHINCHILLA.exists(), reason="shared reference data not present")
def test_chinchilla_replication_fit() -> None:
    """Besiroglu et al. (2024) report E=1.82, A=482, B=2085, alpha=0.35, beta=0.37 on this data."""
    n, d, y = _chinchilla()
    res = fit_two_variable(n, d, y)
    assert res.converged, res.reason
    p = res.params
    assert p["E"] == pytest.approx(1.82, abs=0.05)
    assert p["alpha"] == pytest.approx(0.35, abs=0.02)
    assert p["beta"] == pytest.approx(0.37, abs=0.02)
    assert p["A"] == pytest.approx(482, rel=0.15)
    assert p["B"] == pytest.approx(2085, rel=0.15)


@pytest.mark.slow
@pytest.mark.skipif(not CHINCHILLA.exists(), reason="shared reference data not present")
def test_chinchilla_bootstrap_interval() -> None:
    n, d, y = _chinchilla()
    full = fit_two_variable(n, d, y)
    boot = bootstrap_fit(lambda i, f: fit_two_variable(n[i], d[i], y[i], init=f, n_starts=2), full,
                         np.arange(y.size), n_boot=40, seed=0)
    ci = boot.ci()
    assert boot.n_failed <= 4
    for name in ("E", "alpha", "beta"):
        assert ci[name][0] <= full.params[name] <= ci[name][1]
    assert ci["alpha"][1] - ci["alpha"][0] < 0.15
    assert ci["E"][0] > 1.6 and ci["E"][1] < 2.0
