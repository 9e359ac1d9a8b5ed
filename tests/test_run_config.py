"""Every bad config value is refused with a clear message before any work starts."""

from __future__ import annotations

import dataclasses

import pytest

from mer.config import RunConfig
from mer.model import get_preset
from mer.schedule import OptimConfig


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"alpha": 1.0}, r"alpha=1.0 must be in \[0, 1\)"),
        ({"alpha": -0.1}, r"alpha=-0.1 must be in \[0, 1\)"),
        ({"k": -1}, "k=-1 must be >= 0"),
        ({"eps": 0.0}, r"eps=0.0 must be in \(0, 1\]"),
        ({"eps": 1.5}, r"eps=1.5 must be in \(0, 1\]"),
        ({"alpha": 0.9, "optim": OptimConfig(batch_size=2)}, r"leaves round\(\(1-alpha\)\*B\)=0 new sequences"),
        ({"model": dataclasses.replace(get_preset("cpu-2m"), name="gigantic")}, "unknown model size 'gigantic'"),
        ({"device": "tpu"}, "device='tpu'"),
        ({"checkpoint_every": 0}, "checkpoint_every=0 must be >= 1"),
    ],
)
def test_bad_values_are_refused(overrides, message):
    with pytest.raises(ValueError, match=message):
        RunConfig(**overrides)


def test_new_and_replayed_sequences_per_step():
    cfg = RunConfig(alpha=0.25, optim=OptimConfig(batch_size=32))
    assert (cfg.n_new_per_step, cfg.n_replay_per_step) == (24, 8)
    cfg = RunConfig(alpha=0.5, optim=OptimConfig(batch_size=7))
    assert (cfg.n_new_per_step, cfg.n_replay_per_step) == (4, 3)  # round(3.5) = 4 (banker's rounding)
    assert RunConfig(alpha=0.0).n_replay_per_step == 0
