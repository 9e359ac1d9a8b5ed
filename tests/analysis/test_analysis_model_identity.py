"""Runs are grouped by the model they trained (architecture, vocabulary, parameter counts), never by its name alone."""

from __future__ import annotations

from pathlib import Path

import synthetic_runs as sr

from analysis.claims import forgetting_claim
from analysis.collect import collect
from analysis.families import NO_REPLAY, fit_family, no_replay_runs

LADDER = {"m1": (2, 32, 2, 96), "m2": (4, 48, 4, 128), "m3": (4, 80, 4, 224), "m4": (4, 128, 4, 384)}


def test_custom_ladder_of_four_shapes_analyses_as_four_sizes(tmp_path: Path) -> None:
    # Four custom shapes, all recorded under the one name `custom` (what the config demanded before issue 19).
    specs = [sr.Spec(model=m, seed=s, model_name="custom", shape=shape) for m, shape in LADDER.items() for s in range(2)]
    sr.write_sweep(tmp_path, specs)
    col = collect([tmp_path], progress=False)
    runs = col.runs
    assert runs["model"].nunique() == 4
    assert set(runs["model_name"]) == {"custom"}
    assert set(runs["model"]) == {"L2-d32-h2-ff96-V4096", "L4-d48-h4-ff128-V4096", "L4-d80-h4-ff224-V4096",
                                  "L4-d128-h4-ff384-V4096"}
    assert set(runs["vocab_size"]) == {sr.VOCAB}  # derived from the parameter counts and the width
    assert any("model name 'custom' names 4 different models" in p for p in col.problems)
    # The sizes are the fit's strata (two seeds each, so an interval) and the claims' checks.
    ff = fit_family(NO_REPLAY, no_replay_runs(runs), "retained_loss", stratum="model", n_boot=10)
    assert ff.fit.converged and ff.boot is not None and ff.boot.has_interval, ff.boot.reason
    assert len(forgetting_claim(runs).checks) == 4


def test_custom_ladder_preset_name_on_two_shapes_is_relabelled(tmp_path: Path) -> None:
    # `model=m2` and `model=m2 model.d_model=144` in an old run directory: one name, two models.
    specs = [sr.Spec(model="m2", seed=s, shape=(4, 128, 4, 384)) for s in range(2)]
    specs += [sr.Spec(model="m3", seed=s, model_name="m2", shape=(4, 144, 4, 384)) for s in range(2)]
    specs += [sr.Spec(model="m1", seed=s, shape=(2, 32, 2, 96)) for s in range(2)]
    sr.write_sweep(tmp_path, specs)
    col = collect([tmp_path], progress=False)
    labels = dict(zip(col.runs["run_id"].str.extract(r"model=(m\d)")[0], col.runs["model"], strict=True))
    assert labels["m2"] == "L4-d128-h4-ff384-V4096" and labels["m3"] == "L4-d144-h4-ff384-V4096"
    assert labels["m1"] == "m1"  # an unambiguous name stays
    assert col.runs["model"].nunique() == 3
    assert any("model name 'm2' names 2 different models" in p for p in col.problems)
    assert set(col.evals["model"]) == set(col.runs["model"])  # the evaluation table carries the same labels


def test_custom_ladder_old_runs_without_shape_keep_their_names(collection) -> None:
    # The standard synthetic sweep records names only (as runs from before the shape fields): one label per name.
    assert sorted(collection.runs["model"].unique()) == sorted(sr.MODELS)
    assert (collection.runs["model"] == collection.runs["model_name"]).all()
