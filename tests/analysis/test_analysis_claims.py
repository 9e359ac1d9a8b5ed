"""The four claims: each rule applied to runs whose answer is known, and the overall verdict rule."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from analysis.claims import (
    CONTRADICTS,
    SUPPORTS,
    UNDECIDED,
    Check,
    Claim,
    _compute_check,
    bonferroni,
    check_claims,
    compute_claim,
    replay_claim,
    seeds_needed,
)
from analysis.compare import Comparison
from analysis.families import NO_REPLAY, fit_family, no_replay_runs
from analysis.problems import group_problems

SIZES = {"s1": 1e6, "s2": 4e6}


def _runs(forgetting, retained, seeds: int = 3, noise: float = 0.01, bwt=None) -> pd.DataFrame:
    """Runs of every (size, alpha, k) with the given mean forgetting/retained loss/backward transfer (callables of size,
    alpha, k; backward transfer defaults to minus the forgetting)."""
    bwt = bwt or (lambda m, a, k: -forgetting(m, a, k))
    rng = np.random.default_rng(0)
    rows = []
    for model, n in SIZES.items():
        for alpha in (0.0, 0.25, 0.5):
            for k in (0, 16):
                for s in range(seeds):
                    rows.append(dict(run_id=f"{model}-{alpha}-{k}-{s}", model=model, n_params=n, alpha=alpha, k=k, eps=0.1,
                                     reptile=k > 0, seed=s, flops_per_new_token=6 * n / (1 - alpha),
                                     forgetting=forgetting(model, alpha, k) + noise * rng.standard_normal(),
                                     backward_transfer=bwt(model, alpha, k) + noise * rng.standard_normal(),
                                     retained_loss=retained(model, alpha, k) + noise * rng.standard_normal()))
    return pd.DataFrame(rows)


def _paper(model, alpha, k):  # forgets, replay helps more at larger alpha, Reptile helps
    return 3.0 - 4 * alpha - (0.2 if k else 0.0)


def _claims(runs):
    return {c.key: c for c in check_claims(runs, None)}


def test_a_world_like_the_paper_supports_a_b_and_c() -> None:
    claims = _claims(_runs(_paper, _paper))
    assert claims["a"].verdict == SUPPORTS and len(claims["a"].checks) == 2
    assert claims["b"].verdict == SUPPORTS
    assert claims["c"].verdict == SUPPORTS and len(claims["c"].checks) == 4  # 2 sizes x 2 alphas > 0
    # No no-replay fit given: (d) by dominance alone. Loss falls with alpha and not with size here, so on s1 even the
    # large rate beats the bigger model (contradicts); on s2 no no-replay size used as much compute (cannot tell).
    assert [(ch.label, ch.outcome) for ch in claims["d"].checks] == [("s1", CONTRADICTS), ("s2", UNDECIDED)]
    assert claims["c"].level == pytest.approx(1 - 0.05 / 4)  # Bonferroni over the claim's 4 intervals


def test_the_opposite_world_contradicts() -> None:
    claims = _claims(_runs(lambda m, a, k: -1.0 + 2 * a, lambda m, a, k: 3.0 + (0.3 if k else 0.0)))
    assert claims["a"].verdict == CONTRADICTS  # negative forgetting, tightly measured
    assert claims["b"].verdict == CONTRADICTS  # replay raises forgetting
    assert claims["c"].verdict == CONTRADICTS  # Reptile raises retained loss


def test_effects_lost_in_the_noise_cannot_tell() -> None:
    """No effect at all: with Bonferroni intervals no check of any claim comes out either way (seeded draw)."""
    claims = _claims(_runs(lambda m, a, k: 0.01, lambda m, a, k: 3.0, noise=0.5))
    assert {c.verdict for c in claims.values()} == {UNDECIDED}
    assert {ch.outcome for c in claims.values() for ch in c.checks} == {UNDECIDED}


def test_one_seed_cannot_tell_anything() -> None:
    claims = _claims(_runs(_paper, _paper, seeds=1))
    for key in "abc":
        assert claims[key].verdict == UNDECIDED
        assert all("no interval" in ch.estimate for ch in claims[key].checks)


def test_overall_rule_with_mixed_checks() -> None:
    mixed = Claim("x", "", "", [Check("1", "", SUPPORTS), Check("2", "", CONTRADICTS)])
    assert mixed.verdict == UNDECIDED and "1 of 2 checks support, 1 contradict" in mixed.summary()
    assert Claim("x", "", "", [Check("1", "", CONTRADICTS), Check("2", "", UNDECIDED)]).verdict == CONTRADICTS
    assert Claim("x", "", "", []).summary().startswith(UNDECIDED)


def _cmp(model: str, alpha: float, verdict: str, mult: float = 1.0) -> Comparison:
    lo, hi = ((math.nan, math.nan) if verdict in ("no verdict", "undetermined") else (mult * 0.9, mult * 1.1))
    return Comparison(setting=f"{model}, alpha={alpha:g}", model=model, alpha=alpha, k=0, eps=1.0, metric="retained_loss",
                      n_runs=3, loss=3.0, flops_used=1.0, flops_needed=mult, multiplier=mult, ci_low=lo, ci_high=hi,
                      extrapolated=False, verdict=verdict, sentence="")


@pytest.mark.parametrize(
    ("small", "large", "outcome"),
    [
        ("better than scaling", "worse than scaling", SUPPORTS),
        ("better than scaling", "no clear difference from scaling", SUPPORTS),
        ("better than scaling", "better than scaling", CONTRADICTS),
        ("worse than scaling", "worse than scaling", CONTRADICTS),
        ("no clear difference from scaling", "worse than scaling", UNDECIDED),
        ("no verdict", "no verdict", UNDECIDED),
        ("undetermined", "undetermined", UNDECIDED),
    ],
)
def test_compute_claim_reads_the_multiplier_verdicts(small, large, outcome) -> None:
    check = _compute_check("s1", [_cmp("s1", 0.5, large, 0.7), _cmp("s1", 0.25, small, 1.5)])
    assert check.outcome == outcome


def test_compute_claim_on_runs_with_known_multipliers(collection) -> None:
    """The synthetic sweep: alpha=0.25 is truly better than scaling on retained loss, alpha=0.5 truly worse."""
    usable = collection.runs[collection.runs["usable"]]
    ff = fit_family(NO_REPLAY, no_replay_runs(usable), "retained_loss", stratum="model", n_boot=200)
    claim = compute_claim(usable, ff)
    assert claim.level == pytest.approx(bonferroni(2 * (1 + 5)))  # 2 rates x (the multiplier + 5 no-replay sizes)
    (check,) = claim.checks
    assert check.label == "m3" and check.outcome == SUPPORTS, check.estimate
    failed = fit_family(NO_REPLAY, no_replay_runs(usable)[lambda r: r["model"].isin(["m1", "m2"])], "retained_loss",
                        stratum="model", n_boot=0)
    (check,) = compute_claim(usable, failed).checks
    assert check.outcome == UNDECIDED and "undetermined" in check.estimate


def test_problems_are_listed_once_with_what_they_affect() -> None:
    lines = [
        "fit of retained loss for 'replay, m1' not usable: log E stuck at its lower bound (-3.2): no floor",
        "fit of retained loss for 'replay, m2' not usable: log E stuck at its lower bound (-2.9): no floor",
        "run r1: non-finite loss (diverged run?)",
        "run r2: non-finite loss (diverged run?)",
        "no no-replay runs",
        "no no-replay runs",
    ]
    problems = group_problems(lines)
    assert len(problems) == 3
    assert problems[0].affects == ["replay, m1", "replay, m2"] and "(-3.2)" not in problems[0].message
    assert problems[1].affects == ["r1", "r2"] and "affects 2" in problems[1].line()
    assert problems[2].line() == "no no-replay runs"


FORGETTING_CLIPPED = {0.0: 3.0, 0.25: 0.02, 0.5: 0.02}  # replay at 0.25 already removes (clipped) forgetting
BWT_UNCLIPPED = {0.0: -3.0, 0.25: -0.02, 0.5: 0.3}  # but alpha=0.5 still does better: later tasks help the earlier


def test_b_second_step_is_judged_on_backward_transfer_not_on_clipped_forgetting() -> None:
    runs = _runs(lambda m, a, k: FORGETTING_CLIPPED[a], _paper, bwt=lambda m, a, k: BWT_UNCLIPPED[a])
    claim = replay_claim(runs[~runs["reptile"]])
    assert claim.verdict == SUPPORTS, [ch.estimate for ch in claim.checks]
    for check in claim.checks:
        assert "F(alpha=0.25) - F(alpha=0)" in check.estimate and "BWT(alpha=0.5) - BWT(alpha=0.25)" in check.estimate
    # Backward transfer that falls at the second step contradicts, whatever the clipped forgetting says.
    worse = _runs(lambda m, a, k: FORGETTING_CLIPPED[a], _paper, bwt=lambda m, a, k: {0.0: -3.0, 0.25: -0.02, 0.5: -0.5}[a])
    assert replay_claim(worse[~worse["reptile"]]).verdict == CONTRADICTS


@pytest.mark.parametrize(("level", "seeds"), [(0.95, 4), (1 - 0.05 / 2, 5), (1 - 0.05 / 4, 5), (1 - 0.05 / 10, 6)])
def test_b_seeds_needed_for_the_bonferroni_level(level, seeds) -> None:
    # The most extreme split of 2n runs, 2 / C(2n, n), must fall below 1 - level: C(8,4)=70, C(10,5)=252, C(12,6)=924.
    assert seeds_needed(level) == seeds


def test_b_warns_when_the_study_has_too_few_seeds() -> None:
    claim = replay_claim(_runs(_paper, _paper, seeds=3).query("not reptile"))
    assert claim.level == pytest.approx(bonferroni(4)) and claim.seeds == 3 and claim.seeds_needed == 5
    assert "needs 5 seeds per setting to be reachable" in claim.summary() and "this study has 3" in claim.summary()
    enough = replay_claim(_runs(_paper, _paper, seeds=5).query("not reptile"))
    assert enough.seeds == 5 and not enough.seeds_warning and "warning" not in enough.summary()
