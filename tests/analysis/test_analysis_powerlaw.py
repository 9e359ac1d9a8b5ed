"""Power-law fitting: recovery of known parameters, failure reports (NaN, collinear, bounds), intervals, the Chinchilla data."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.bootstrap import percentile_interval, residual_bootstrap
from analysis.powerlaw import BOUND_TOLERANCE, EXPONENT_BOUNDS, fit_power_law, fit_two_variable, invert_power_law

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


def test_bootstrap_interval_covers_truth() -> None:
    rng = np.random.default_rng(11)
    c = np.repeat(SIZES, 3)
    y = _curve(c) * np.exp(rng.normal(0, 0.005, c.size))
    full = fit_power_law(c, y)
    boot = residual_bootstrap(lambda ys, f: fit_power_law(c, ys, init=f, n_starts=2), full, (c,), y,
                              strata=np.repeat(np.arange(5), 3), n_boot=60, seed=1)
    assert boot.has_interval and boot.noise_df == c.size - 3
    assert 0.002 < boot.noise < 0.01  # the 0.5% noise the runs were drawn with
    ci = boot.ci()
    for name, truth in (("E", 2.3), ("A", 250.0), ("b", 0.28)):
        lo, hi = ci[name]
        assert lo <= truth <= hi, (name, lo, hi)
        assert lo <= full.params[name] <= hi
    assert ci["b"][1] - ci["b"][0] < 0.1  # informative, not just wide
    lo_band, hi_band = boot.band(np.array([1e8]))
    assert lo_band[0] < _curve(np.array([1e8]))[0] < hi_band[0]


@pytest.mark.parametrize(
    ("seeds", "noise", "reason"),
    [
        ([1, 1, 1, 1, 1], 0.005, "one run at scale 0, 1, 2, 3, 4"),  # one run per size: seed noise unseen
        ([2, 1, 2, 2, 2], 0.005, "one run at scale 1"),
        ([2, 2, 2, 2, 2], 0.0, "no noise"),  # exact data: every refit would be identical
    ],
)
def test_no_interval_when_the_runs_cannot_show_noise(seeds, noise, reason) -> None:
    c = np.repeat(SIZES, seeds)
    y = _curve(c) * np.exp(np.random.default_rng(0).normal(0, noise, c.size))
    full = fit_power_law(c, y)
    assert full.converged
    boot = residual_bootstrap(lambda ys, f: fit_power_law(c, ys, init=f, n_starts=2), full, (c,), y,
                              strata=np.repeat(np.arange(5), seeds), n_boot=20)
    assert not boot.has_interval and reason in boot.reason
    assert all(np.isnan(v).all() for v in boot.ci().values())
    assert np.isnan(boot.band(np.array([1e8]))[0]).all()


def test_inverse_of_nan_or_inf_is_nan_never_inf() -> None:
    c = np.repeat(SIZES, 2)
    res = fit_power_law(c, _curve(c))
    out = res.inverse(np.array([np.nan, np.inf, -np.inf, 2.0, 3.0]))
    assert np.isnan(out[:3]).all()
    assert np.isinf(out[3]) and np.isfinite(out[4])
    assert np.isnan(invert_power_law(np.array([np.nan, 1.0, 0.3]), 1.0, 3.0))


@pytest.mark.parametrize("tokens_per_param", [20.0, "jittered"])
def test_collinear_n_and_d_is_not_converged(tokens_per_param) -> None:
    n = np.repeat([1e7, 5e7, 2e8, 1e9, 5e9], 2)
    jitter = 1 + 0.01 * np.tile([-1, 1], 5) if tokens_per_param == "jittered" else 1.0
    d = 20.0 * n * jitter
    res = fit_two_variable(n, d, 1.7 + 400 / n**0.34 + 1800 / d**0.28)
    assert not res.converged
    assert "collinear" in res.reason and "vary D at a fixed N" in res.reason


def test_exponent_near_its_bound_is_stuck_by_the_same_rule() -> None:
    """b = 3.98 lies within BOUND_TOLERANCE of the upper bound 4: rejected like b = 4 itself."""
    hi = EXPONENT_BOUNDS[1]
    assert hi - 3.98 < BOUND_TOLERANCE * (hi - EXPONENT_BOUNDS[0])
    c = np.repeat(np.geomspace(1.0, 10.0, 5), 2)
    res = fit_power_law(c, 3.0 + 5.0 * c**-3.98)
    assert not res.converged
    assert "b stuck at its upper bound" in res.reason
    ok = fit_power_law(c, 3.0 + 5.0 * c**-3.5)  # clear of the band: accepted
    assert ok.converged and ok.params["b"] == pytest.approx(3.5, rel=1e-4)


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
    boot = residual_bootstrap(lambda ys, f: fit_two_variable(n, d, ys, init=f, n_starts=2), full, (n, d), y,
                              strata=np.repeat(0, y.size), n_boot=40, seed=0)
    ci = boot.ci()
    assert boot.n_failed <= 4
    for name in ("E", "alpha", "beta"):
        assert ci[name][0] <= full.params[name] <= ci[name][1]
    assert ci["alpha"][1] - ci["alpha"][0] < 0.15
    assert ci["E"][0] > 1.6 and ci["E"][1] < 2.0
