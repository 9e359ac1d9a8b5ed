"""What a run records of Reptile and of its budgets: interpolations per task, the task-end window, task 0's budget."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from mer_testing import tiny_run_config

from mer.launch.runner import run_training
from mer.replay.buffer import BufferConfig


def _train(cfg) -> dict:
    resolved = json.loads(json.dumps(dataclasses.asdict(cfg), default=str))
    return run_training(cfg, "run", resolved)


def _evals(cfg) -> list[dict]:
    lines = (Path(cfg.runs_dir) / "run" / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["event"] == "eval"]


def test_interpolations_per_task_are_recorded(small_bible, tmp_path):
    # 2048 new tokens a task, 32-token blocks, 6 new rows a step -> 11 steps; k=3 -> 3 interpolations a task.
    cfg = tiny_run_config(small_bible[0], tmp_path, k=3, eps=0.5)
    summary = _train(cfg)
    assert summary["steps_per_task"] == {t: 11 for t in summary["tasks"]}
    assert summary["reptile_steps_per_task"] == {t: 3 for t in summary["tasks"]}
    assert summary["totals"]["reptile_steps"] == 15


def test_reptile_at_task_end_interpolates_the_last_short_window(small_bible, tmp_path):
    # k=4 in 11 steps: full windows end at steps 4 and 8; the last 3 steps are a shorter window.
    plain = _train(tiny_run_config(small_bible[0], tmp_path / "plain", k=4, eps=0.5))
    at_end_cfg = tiny_run_config(small_bible[0], tmp_path / "end", k=4, eps=0.5, reptile_at_task_end=True)
    at_end = _train(at_end_cfg)
    assert plain["reptile_steps_per_task"] == {t: 2 for t in plain["tasks"]}
    assert at_end["reptile_steps_per_task"] == {t: 3 for t in at_end["tasks"]}
    assert at_end["metrics"]["retained_loss"] != plain["metrics"]["retained_loss"]
    # The boundary evaluation sees the interpolated weights: its count already includes the task-end step.
    assert [e["reptile_steps"] for e in _evals(at_end_cfg) if e["boundary"]] == [3, 6, 9, 12, 15]


def test_reptile_at_task_end_makes_a_long_k_act(small_bible, tmp_path):
    """k longer than a task is refused unless the task-end window is interpolated: then once per task."""
    summary = _train(tiny_run_config(small_bible[0], tmp_path, k=50, eps=0.5, reptile_at_task_end=True))
    assert summary["reptile_steps_per_task"] == {t: 1 for t in summary["tasks"]}


def test_task_zero_trains_its_budget_when_the_current_task_is_not_replayed(small_bible, tmp_path):
    """alpha=0.5, replay_current_task=false: nothing can be replayed in task 0, so it trains full batches of new
    data for ceil(2048 / (32 x 8)) = 8 steps: 2048 new tokens, not twice its budget."""
    cfg = tiny_run_config(small_bible[0], tmp_path, alpha=0.5, buffer=BufferConfig(replay_current_task=False))
    summary = _train(cfg)
    assert summary["steps_per_task"]["en"] == 8
    boundary = [e for e in _evals(cfg) if e["boundary"]]
    new_per_task = [b - a for a, b in zip([0] + [e["tokens_new"] for e in boundary], [e["tokens_new"] for e in boundary])]
    assert new_per_task[0] == 2048 == 8 * 8 * 32
    assert boundary[0]["tokens_replay"] == 0
    # Later tasks: 4 new rows a step, ceil(2048 / 128) = 16 steps, 2048 new tokens each.
    assert new_per_task[1:] == [2048] * 4
