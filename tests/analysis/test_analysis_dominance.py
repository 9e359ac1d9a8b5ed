"""Claim (d) by dominance: replay settings against the measured no-replay sizes, on synthetic runs of known pattern."""

from __future__ import annotations

from pathlib import Path

import pytest
import synthetic_runs as sr

from analysis.claims import SUPPORTS, bonferroni, compute_claim
from analysis.collect import collect
from analysis.compare import compare_with_scaling
from analysis.dominance import BETTER, MIXED, NO_DIFFERENCE, NOT_COMPARABLE, WORSE, dominance
from analysis.families import NO_REPLAY, fit_family, no_replay_runs
from analysis.report import build_report

# The pilot's pattern: no-replay retained loss RISES with size (larger models forget more), so no power law fits;
# a small replay rate on the smallest size beats every no-replay size, a large one is worse than that size alone.
NO_REPLAY_LOSSES = {"m1": (6.0, 9.0), "m2": (5.7, 9.4), "m3": (5.4, 9.8), "m4": (5.1, 10.2)}
REPLAY_LOSSES = {0.25: (5.5, 6.0), 0.5: (6.5, 12.0)}


@pytest.fixture(scope="module")
def pilot_runs(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("pilot")
    specs = [sr.Spec(model=m, seed=s, losses=losses) for m, losses in NO_REPLAY_LOSSES.items() for s in range(3)]
    specs += [sr.Spec(model="m1", alpha=a, seed=s, losses=losses) for a, losses in REPLAY_LOSSES.items() for s in range(3)]
    sr.write_sweep(root, specs)
    runs = collect([root], progress=False).runs
    return root, runs[runs["usable"]]


def _verdicts(ds) -> dict[str, str]:
    return {d.setting: d.verdict for d in ds}


def test_dominance_decides_where_the_no_replay_fit_fails(pilot_runs) -> None:
    _, runs = pilot_runs
    ff = fit_family(NO_REPLAY, no_replay_runs(runs), "retained_loss", stratum="model", n_boot=20)
    assert not ff.fit.converged  # the loss does not fall with size: no multiplier anywhere
    assert {c.verdict for c in compare_with_scaling(runs, ff)} == {"undetermined"}
    verdicts = _verdicts(dominance(runs, "retained_loss"))
    assert verdicts == {"m1, alpha=0.25": BETTER, "m1, alpha=0.5": WORSE}


def test_dominance_gives_claim_d_its_verdict_at_the_bonferroni_level(pilot_runs) -> None:
    _, runs = pilot_runs
    ff = fit_family(NO_REPLAY, no_replay_runs(runs), "retained_loss", stratum="model", n_boot=20)
    claim = compute_claim(runs, ff)
    (check,) = claim.checks
    assert check.label == "m1" and check.outcome == SUPPORTS, check.estimate
    assert "dominance better than scaling" in check.estimate and "dominance worse than scaling" in check.estimate
    assert claim.level == pytest.approx(bonferroni(2 * 4))  # no fit: 2 rates x 4 no-replay sizes
    assert compute_claim(runs, None).checks[0].outcome == SUPPORTS  # no fit given at all: dominance alone


def test_dominance_on_a_known_power_law(collection) -> None:
    """The standard sweep (analysis/synthetic_runs.py): verdicts follow from the true laws and multipliers.

    Retained loss of m3 at alpha=0.25 is R(1.6 x 1.33 c3): below m3's own R(c3), above m4's R(5 c3): no clear
    difference; at alpha=0.5 R(0.8 x 2 c3): the same. Learned loss of every m3 setting is P(C) with C <= c3,
    above m4's P(5 c3) at more compute: never better than scaling."""
    usable = collection.runs[collection.runs["usable"]]
    retained = _verdicts(dominance(usable, "retained_loss"))
    assert retained["m3, alpha=0.25"] == NO_DIFFERENCE and retained["m3, alpha=0.5"] == NO_DIFFERENCE
    learned = _verdicts(dominance(usable, "learned_loss"))
    assert len(learned) == 11 and BETTER not in learned.values()


def test_dominance_mixed_and_not_comparable(pilot_runs) -> None:
    _, runs = pilot_runs
    # Only the replay runs: nothing to compare with.
    alone = runs[runs["alpha"] > 0]
    assert set(_verdicts(dominance(alone, "retained_loss")).values()) == {NOT_COMPARABLE}
    # A setting that beats the bigger sizes but loses to the smaller one that used less compute is mixed.
    shifted = runs.copy()
    pick = (shifted["alpha"] == 0.25)
    shifted.loc[pick, "flops_per_new_token"] = shifted.loc[shifted["model"] == "m2", "flops_per_new_token"].mean() * 1.01
    shifted.loc[pick, "retained_loss"] += 3.3  # 9.3: above m1's 9.0, below m3's 9.8 and m4's 10.2
    assert _verdicts(dominance(shifted, "retained_loss"))["m1, alpha=0.25"] == MIXED


def test_dominance_in_the_report(pilot_runs, tmp_path: Path) -> None:
    root, _ = pilot_runs
    rep = build_report([root], tmp_path, n_boot=20, progress=False)
    assert not rep.errors, rep.errors
    assert _verdicts(rep.dominance["retained_loss"]) == {"m1, alpha=0.25": BETTER, "m1, alpha=0.5": WORSE}
    text = (tmp_path / "report.md").read_text()
    assert "## Replay versus scaling by dominance" in text
    assert "m1, alpha=0.25 — better than scaling on retained loss" in text
    assert "**Learned loss:**" in text  # reported on learned loss too
    (d,) = [c for c in rep.claims if c.key == "d"]
    assert d.verdict == SUPPORTS
