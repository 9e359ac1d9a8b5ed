"""Intervals are claims too: their coverage of known truths, simulated with the report's own code."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from analysis.coverage import DESIGNS, coverage
from analysis.seed_intervals import difference_interval, mean_interval

FLOOR = 0.90  # the floor for nominal 95% intervals
REPLICATES = 100


@pytest.mark.slow
@pytest.mark.parametrize("design", DESIGNS, ids=[d.name for d in DESIGNS])
def test_power_law_and_multiplier_intervals_reach_the_floor(design) -> None:
    """3 seeds per size, 1% noise: the 95% intervals of E, b and the multiplier cover >= 90% of the time."""
    cov = coverage(design, replicates=REPLICATES, seeds=3, n_boot=100, seed=0)
    assert min(cov.values()) >= FLOOR, cov
    assert max(cov.values()) <= 1.0


def test_one_seed_per_size_gives_no_interval_in_any_replicate() -> None:
    """With one run per size the report gives no interval at all, so it can never claim coverage it lacks."""
    cov = coverage(DESIGNS[0], replicates=3, seeds=1, n_boot=10, seed=0)
    assert cov == {"E": 0.0, "b": 0.0, "multiplier": 0.0}


def test_seed_intervals_cover_at_their_level() -> None:
    """The t and Welch intervals of the tables and claims, on normal noise with 3 seeds: about 95%."""
    rng = np.random.default_rng(0)
    n_rep = 4000
    means = [mean_interval(rng.normal(5.0, 0.2, 3)) for _ in range(n_rep)]
    diffs = [difference_interval(rng.normal(5.0, 0.1, 3), rng.normal(4.7, 0.3, 3)) for _ in range(n_rep)]
    mean_cov = np.mean([e.low <= 5.0 <= e.high for e in means])
    diff_cov = np.mean([e.low <= 0.3 <= e.high for e in diffs])
    se = np.sqrt(0.95 * 0.05 / n_rep)
    assert abs(mean_cov - 0.95) < 4 * se, mean_cov  # exact for the t interval
    assert 0.93 <= diff_cov <= 0.99, diff_cov  # Welch is slightly conservative with unequal variances
    assert stats.t.ppf(0.975, 2) == pytest.approx(4.303, abs=1e-3)


def test_no_spread_means_no_interval() -> None:
    assert not mean_interval([3.0]).has_interval
    assert not mean_interval([0.0, 0.0, 0.0]).has_interval  # never a zero-width interval
    assert mean_interval([0.0, 0.0, 0.0]).text() == "+0.000 (no interval: runs without spread)"
    assert not difference_interval([3.0, 3.0], [2.0, 2.0]).has_interval
    assert mean_interval([3.0, np.nan, 3.2]).n == 2
