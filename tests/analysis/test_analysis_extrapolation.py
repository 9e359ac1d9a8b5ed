"""Does the law predict? The no-replay fit without its largest size, against that size's measured loss."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from analysis.extrapolation import NO_VERDICT, PREDICTS, UNDER, leave_largest_out
from analysis.families import NO_REPLAY, fit_family

C = np.geomspace(1e6, 1e9, 5)  # FLOPs per new token of 5 sizes


def _family(losses_at, seeds: int = 3, noise: float = 0.003, n_boot: int = 60):
    """A no-replay fit over the 5 sizes with the given mean loss per size (a callable of C and the size index)."""
    rng = np.random.default_rng(1)
    rows = [dict(run_id=f"s{i}-{s}", model=f"s{i}", flops_per_new_token=c, eval_fingerprint="f",
                 retained_loss=losses_at(c, i) * np.exp(noise * rng.standard_normal()))
            for i, c in enumerate(C) for s in range(seeds)]
    return fit_family(NO_REPLAY, pd.DataFrame(rows), "retained_loss", stratum="model", n_boot=n_boot)


def law(c: float) -> float:
    return 2.3 + 250.0 * c**-0.28


def test_extrapolation_of_a_true_law_predicts_the_largest_size() -> None:
    check = leave_largest_out(_family(lambda c, i: law(c)), n_boot=60)
    assert check is not None and check.held_out == "s4" and check.n_sizes == 5
    assert check.x == C[-1]
    assert check.verdict == PREDICTS, check.sentence
    assert check.ci_low <= 0 <= check.ci_high
    assert abs(check.predicted - law(C[-1])) < 0.05 * law(C[-1])
    assert "predicts" in check.sentence and "s4" in check.sentence


def test_extrapolation_catches_a_largest_size_off_the_law() -> None:
    # The largest size does 10% worse than the law of the others: the law under-predicts its loss.
    check = leave_largest_out(_family(lambda c, i: law(c) * (1.10 if i == 4 else 1.0)), n_boot=60)
    assert check.verdict == UNDER, check.sentence
    assert check.ci_high < 0 and check.error < 0
    assert abs(check.error + 0.10 * law(C[-1])) < 0.03 * law(C[-1])  # the shift put in, recovered


def test_extrapolation_needs_four_sizes_and_seeds() -> None:
    ff = _family(lambda c, i: law(c))
    three = fit_family(NO_REPLAY, pd.DataFrame({"run_id": ff.points["run_id"], "flops_per_new_token": ff.points["x"],
                                                "retained_loss": ff.points["y"], "model": ff.points["stratum"],
                                                "eval_fingerprint": "f"})[lambda d: d["model"].isin(["s0", "s1", "s2"])],
                       "retained_loss", stratum="model", n_boot=0)
    assert leave_largest_out(three, n_boot=10) is None
    one_seed = leave_largest_out(_family(lambda c, i: law(c), seeds=1), n_boot=20)
    assert one_seed.verdict == NO_VERDICT and "no interval" in one_seed.sentence


def test_extrapolation_in_the_report(report) -> None:
    text = (report.out / "report.md").read_text()
    assert "## Does the law predict?" in text
    checks = {(e.metric, e.family): e for e in report.extrapolations}
    assert set(checks) == {("retained_loss", NO_REPLAY), ("learned_loss", NO_REPLAY)}  # per FLOPs per new token
    for e in checks.values():  # the synthetic truth is a power law: the fit of m1-m4 predicts m5
        assert e.held_out == "m5" and e.verdict == PREDICTS, e.sentence
    saved = json.loads((report.out / "fits.json").read_text())["extrapolations"]
    assert {e["verdict"] for e in saved} == {PREDICTS}
