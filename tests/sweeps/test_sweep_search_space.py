"""Hydra's sweep syntax -> Optuna distributions and back to override strings (pure functions)."""

from __future__ import annotations

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from hydra_plugins.mer_sweeps.search_space import format_value, parse_search_space


def test_each_sweep_kind_maps_to_its_distribution():
    space = parse_search_space(
        {"alpha": "interval(0, 0.5)", "k": "tag(log, int(interval(10, 1000)))"},
        ["eps=tag(log, interval(0.01, 1))", "seed=range(0, 10, 3)", "model=cpu-0.5m,cpu-2m", "lr=range(0.1, 0.5, 0.2)",
         "optim.batch_size=8", "+extra=choice(1, 2)"])
    d = space.distributions
    assert d["alpha"] == FloatDistribution(0.0, 0.5)
    assert d["k"] == IntDistribution(10, 1000, log=True)
    assert d["eps"] == FloatDistribution(0.01, 1.0, log=True)
    assert d["seed"] == IntDistribution(0, 9, step=3)  # range() excludes its stop: 0, 3, 6, 9
    assert d["model"] == CategoricalDistribution(["cpu-0.5m", "cpu-2m"])
    assert d["lr"] == FloatDistribution(0.1, 0.3, step=0.2)
    assert d["+extra"] == CategoricalDistribution([1, 2])
    assert space.fixed == ["optim.batch_size=8"]
    assert space.grid["seed"] == [0, 3, 6, 9] and space.grid["model"] == ["cpu-0.5m", "cpu-2m"]
    assert "alpha" not in space.grid  # an interval has no grid


def test_command_line_wins_over_config_params():
    space = parse_search_space({"alpha": "interval(0, 0.5)", "k": "100,500"}, ["k=7", "alpha=choice(0.1, 0.2)"])
    assert space.distributions == {"alpha": CategoricalDistribution([0.1, 0.2])}
    assert space.fixed == ["k=7"]


def test_trial_overrides_round_trip_through_hydra():
    from hydra.core.override_parser.overrides_parser import OverridesParser

    space = parse_search_space(None, ["alpha=interval(0,0.5)", "name=choice('a b',c)", "xs=choice([1,2],[3])",
                                      "k=int(interval(1,5))", "runs_dir=/tmp/x"])
    assert space.distributions["name"].choices == ("a b", "c")
    params = {"alpha": 1e-05, "name": "a b", "xs": "[1,2]", "k": 3}
    overrides = space.overrides(params)
    assert overrides == ["runs_dir=/tmp/x", "alpha=1e-05", "name=a\\ b", "xs=[1,2]", "k=3"]
    parsed = {o.key_or_group: o.value() for o in OverridesParser.create().parse_overrides(overrides)}
    assert parsed == {"runs_dir": "/tmp/x", "alpha": 1e-05, "name": "a b", "xs": [1, 2], "k": 3}


@pytest.mark.parametrize("bad", ["a=tag(log, interval(0, 1))", "a=tag(log, choice(1, 2))", "a=interval(1, 1)",
                                 "a=range(5, 1)", "a=tag(log, range(1, 10, 2))"])
def test_invalid_spaces_are_refused(bad):
    with pytest.raises(ValueError):
        parse_search_space(None, [bad])


def test_format_value_refuses_non_finite():
    assert format_value(0.1) == "0.1" and format_value(None) == "null" and format_value(True) == "true"
    with pytest.raises(ValueError):
        format_value(float("nan"))


def test_space_is_sampled_by_optuna_ask_and_tell():
    space = parse_search_space(None, ["alpha=interval(0,0.5)", "k=tag(log, int(interval(10,1000)))", "m=a,b"])
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(5):
        trial = study.ask(space.distributions)
        alpha, k = trial.params["alpha"], trial.params["k"]
        assert 0 <= alpha <= 0.5 and 10 <= k <= 1000 and isinstance(k, int) and trial.params["m"] in ("a", "b")
        study.tell(trial, alpha)
    assert len(study.trials) == 5
