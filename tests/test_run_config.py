"""Every bad config value is refused with a clear message before any work starts."""

from __future__ import annotations

import dataclasses

import pytest

from mer.compute.budget import steps_per_task
from mer.config.run_config import RunConfig
from mer.data.config import DataConfig, TaskConfig
from mer.model.llama import get_preset
from mer.optim.schedule import OptimConfig
from mer.replay.buffer import BufferConfig


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


# --------------------------------------------------------------------------- Reptile that cannot fire
def run_config(**fields) -> RunConfig:
    """A RunConfig with the batch of conf/optim/default.yaml (16), as `python -m mer.run` composes it."""
    return RunConfig(**{"optim": OptimConfig(batch_size=16), **fields})


def test_reptile_that_cannot_fire_in_a_task_is_refused_with_both_ways_out():
    # The default config: 100,000 new tokens per task, 128-token blocks, 12 new sequences a step -> 66 steps.
    with pytest.raises(ValueError) as refusal:
        run_config(k=100)
    message = str(refusal.value)
    assert "k=100 cannot fire" in message
    assert "steps per task: en 66, fr 66, de 66, ar 66, ja 66" in message
    assert "k<=66" in message and "data.budget_tokens>=152065" in message and "reptile_at_task_end=true" in message
    # Both fixes it names are accepted, and the budget it names is the smallest one that works.
    run_config(k=66)
    run_config(k=100, data=DataConfig(budget_tokens=152065))
    with pytest.raises(ValueError, match="cannot fire"):
        run_config(k=100, data=DataConfig(budget_tokens=152064))
    assert run_config(k=100, data=DataConfig(budget_tokens=152065)).task_steps == [100] * 5


def test_reptile_refusal_names_only_the_short_tasks():
    tasks = [TaskConfig(name="en", budget_tokens=200_000), TaskConfig(name="fr", budget_tokens=50_000)]
    with pytest.raises(ValueError, match=r"task\(s\) fr have fewer .*steps per task: en 131, fr 33") as refusal:
        run_config(k=40, data=DataConfig(tasks=tasks))
    assert "for every task (the tasks' own budget_tokens too)" in str(refusal.value)


def test_without_the_anchor_reset_the_whole_run_must_hold_k_steps():
    run_config(k=300, reptile_reset_each_task=False)  # 5 x 66 = 330 steps: fires once
    with pytest.raises(ValueError, match="the whole run has 330 optimizer steps, fewer than k=400"):
        run_config(k=400, reptile_reset_each_task=False)


def test_a_step_budget_names_the_steps_to_give():
    with pytest.raises(ValueError, match="data.budget_steps>=100"):
        run_config(k=100, data=DataConfig(budget_tokens=None, budget_steps=50))
    run_config(k=50, data=DataConfig(budget_tokens=None, budget_steps=50))


def test_reptile_at_task_end_or_off_is_never_refused():
    run_config(k=100, reptile_at_task_end=True)  # every task then ends with an interpolation
    run_config(k=0)
    run_config(k=None)
    run_config(k=10_000, eps=1.0)  # eps=1 is the documented no-op: Reptile is off, nothing to refuse


def test_budget_steps_with_a_per_task_token_budget_is_refused():
    with pytest.raises(ValueError, match="data.budget_steps=50 is set together with a per-task budget_tokens"):
        DataConfig(tasks=[TaskConfig(name="en", budget_tokens=1000)], budget_tokens=None, budget_steps=50)


def test_steps_per_task_formula():
    # ceil(budget / (seq_len * n_new)); task 0 without replay of the current task trains B new rows a step.
    assert steps_per_task([100_000] * 3, None, 128, 12, 4, True) == [66, 66, 66]
    assert steps_per_task([100_000] * 3, None, 128, 12, 4, False) == [49, 66, 66]
    assert steps_per_task([100_000] * 3, None, 128, 16, 0, False) == [49, 49, 49]  # alpha=0: nothing to fill
    assert steps_per_task([None] * 2, 7, 128, 12, 4, True) == [7, 7]
    cfg = run_config(alpha=0.5, buffer=BufferConfig(replay_current_task=False))
    assert cfg.task_steps == [49, 98, 98, 98, 98]
