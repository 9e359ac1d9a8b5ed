"""A relaunch is compared with the saved config setting by setting: what differs is named, and a setting that
newer code added, at its default, is no difference (older run directories stay resumable)."""

from __future__ import annotations

import dataclasses

from mer.config.diff import config_differences
from mer.config.run_config import RunConfig


def _config() -> dict:
    return dataclasses.asdict(RunConfig())


def test_equal_configs_have_no_difference():
    assert config_differences(_config(), _config()) == []


def test_a_changed_setting_is_named_with_both_values():
    changed = _config()
    changed["alpha"], changed["eval"]["every"] = 0.5, 7
    assert config_differences(_config(), changed) == [f"alpha: {RunConfig().alpha!r} -> 0.5", "eval.every: 100 -> 7"]


def test_a_setting_added_since_at_its_default_is_no_difference():
    saved = _config()
    del saved["eval"]["grad_alignment"]  # a run directory written before the setting existed
    assert config_differences(saved, _config()) == []


def test_a_setting_added_since_away_from_its_default_is_a_difference():
    saved, now = _config(), _config()
    del saved["eval"]["grad_alignment"]
    now["eval"]["grad_alignment"] = True
    assert config_differences(saved, now) == ["eval.grad_alignment: (not in this config) -> True"]


def test_a_setting_the_code_no_longer_has_is_a_difference():
    saved = _config()
    saved["optim"]["old_knob"] = 3
    assert config_differences(saved, _config()) == ["optim.old_knob: 3 -> (not in this config)"]


def test_task_lists_compare_as_a_whole():
    saved, now = _config(), _config()
    now["data"]["tasks"] = now["data"]["tasks"][:2]
    assert [d.split(":")[0] for d in config_differences(saved, now)] == ["data.tasks"]


def test_a_task_setting_added_since_at_its_default_is_no_difference():
    saved, now = _config(), _config()
    for task in saved["data"]["tasks"]:  # a run directory written before tasks had packages / max_packages
        del task["packages"], task["max_packages"]
    assert config_differences(saved, now) == []
    now["data"]["tasks"][1]["packages"] = ["debian-handbook"]  # set: that is a difference
    assert [d.split(":")[0] for d in config_differences(saved, now)] == ["data.tasks"]
