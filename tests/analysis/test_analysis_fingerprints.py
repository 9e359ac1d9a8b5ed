"""Runs scored on different evaluations (different fingerprints) are never fitted or compared together."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import synthetic_runs as sr

from analysis.collect import collect
from analysis.compare import compare_with_scaling
from analysis.families import NO_REPLAY, fit_family, no_replay_runs
from analysis.fingerprints import UNKNOWN, MixedEvaluations
from analysis.report import build_report, main

MODELS = ["m1", "m2", "m3", "m4"]


def _sweep(root: Path, context_of: dict[str, int | None] | None = None, replay_context: int | None = sr.SEQ_LEN):
    """No-replay runs of four sizes (eval.context per model from `context_of`) and replay runs on m3."""
    context_of = context_of or {}
    specs = [sr.Spec(m, seed=s, eval_context=context_of.get(m, sr.SEQ_LEN)) for m in MODELS for s in range(2)]
    specs += [sr.Spec(sr.REPLAY_MODEL, alpha=0.25, seed=s, eval_context=replay_context) for s in range(2)]
    sr.write_sweep(root, specs)
    return root


def _usable(root: Path):
    runs = collect([root], progress=False).runs
    return runs[runs["usable"]]


def test_runs_table_has_the_fingerprint_id_or_none(tmp_path: Path) -> None:
    runs = collect([_sweep(tmp_path / "s", {"m1": None})], progress=False).runs
    ids = dict(zip(runs["run_id"], runs["eval_fingerprint"], strict=True))
    assert pd.isna(ids["alpha=0.0,eps=1.0,k=0,model=m1,seed=0"])  # an old run: none (None in its row dict)
    fingerprinted = {v for k, v in ids.items() if "model=m1" not in k}
    assert len(fingerprinted) == 1 and len(fingerprinted.pop()) == 16


def test_family_fit_refuses_runs_with_different_fingerprints(tmp_path: Path) -> None:
    usable = _usable(_sweep(tmp_path / "s", {"m4": 32}))
    with pytest.raises(MixedEvaluations) as refused:
        fit_family(NO_REPLAY, no_replay_runs(usable), "retained_loss", stratum="model", n_boot=0)
    message = str(refused.value)
    assert message.startswith("refused to fit retained loss for 'no replay (model size)'")
    assert "2 evaluation fingerprints" in message and "eval.context" in message and "data.eval_tokens" in message
    (big, small) = refused.value.groups.values()  # the larger group first
    assert len(big) == 6 and sorted(small) == ["alpha=0.0,eps=1.0,k=0,model=m4,seed=0", "alpha=0.0,eps=1.0,k=0,model=m4,seed=1"]
    assert all(run in message for run in small)
    # the same runs with one evaluation are fitted, and the fit says which evaluation
    same = no_replay_runs(usable)[no_replay_runs(usable)["model"] != "m4"]
    ff = fit_family(NO_REPLAY, same, "retained_loss", stratum="model", n_boot=0)
    assert ff.eval_fingerprint == same["eval_fingerprint"].iloc[0]


def test_comparison_refuses_a_setting_scored_otherwise_than_the_fit(tmp_path: Path) -> None:
    usable = _usable(_sweep(tmp_path / "s", replay_context=32))
    ff = fit_family(NO_REPLAY, no_replay_runs(usable), "retained_loss", stratum="model", n_boot=0)
    with pytest.raises(MixedEvaluations, match=r"refused to compare replay with scaling on retained loss.*model=m3"):
        compare_with_scaling(usable, ff)


def test_runs_without_a_fingerprint_are_one_group_that_is_not_mixed_with_others(tmp_path: Path) -> None:
    mixed = _usable(_sweep(tmp_path / "mixed", {"m1": None}))
    with pytest.raises(MixedEvaluations) as refused:
        fit_family(NO_REPLAY, no_replay_runs(mixed), "learned_loss", stratum="model", n_boot=0)
    assert UNKNOWN in refused.value.groups and "no eval_fingerprint_id in summary.json" in str(refused.value)
    old = _usable(_sweep(tmp_path / "old", dict.fromkeys(MODELS), replay_context=None))
    ff = fit_family(NO_REPLAY, no_replay_runs(old), "learned_loss", stratum="model", n_boot=0)
    assert ff.fit.converged and ff.eval_fingerprint == UNKNOWN
    assert compare_with_scaling(old, ff)


def test_report_refuses_with_a_reason_and_still_writes_the_rest(tmp_path: Path, capsys) -> None:
    root = _sweep(tmp_path / "s", {"m4": 32})
    rep = build_report([root], tmp_path / "out", n_boot=0, progress=False)
    assert rep.errors == [] and rep.fits == [] and rep.comparisons == []
    text = (tmp_path / "out" / "report.md").read_text()
    assert "refused to fit power laws or compare replay with scaling" in text
    assert "alpha=0.0,eps=1.0,k=0,model=m4,seed=1" in text and "same eval.context" in text
    assert "No comparison could be made" in text
    assert (tmp_path / "out" / "tables" / "retained.md").exists()
    assert not (tmp_path / "out" / "errors.log").exists()
    assert main([str(root), "--out", str(tmp_path / "cli"), "--n-boot", "0", "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "warning: refused to fit power laws" in err and "Traceback" not in err
