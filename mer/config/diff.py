"""Which settings of a saved run's config differ from a relaunch's (mer.launch.runner refuses the directory then).

A setting that newer code added is absent from the config an older run saved. Left at its default, it does
what the older code did (a new setting's default keeps the old behaviour), so it is not a difference: a run
started before `eval.grad_alignment` existed resumes with `eval.grad_alignment=false`. Set to anything else,
it is one. Keys the current code no longer has count as differences too: their effect cannot be reproduced.
"""

from __future__ import annotations

import dataclasses
from functools import cache
from typing import Any

_MISSING = object()


def flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """`{"eval": {"every": 5}}` -> `{"eval.every": 5}`; lists stay values (`data.tasks` compares as a whole)."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten(value, path + "."))
        else:
            flat[path] = value
    return flat


@cache
def _defaults() -> dict[str, Any]:
    from mer.config.run_config import RunConfig

    return flatten(dataclasses.asdict(RunConfig()))


@cache
def _task_defaults() -> dict[str, Any]:
    from mer.data.config import TaskConfig

    return dataclasses.asdict(TaskConfig())


def _with_added_task_settings(saved: dict[str, Any], current: dict[str, Any]) -> dict[str, Any]:
    """`saved` with each task of `data.tasks` given the task settings newer code added (`packages`, ...) where the
    current task has them at their default: the task list compares as a whole, so without this an older run
    directory would differ in every task by a key it could not have had."""
    saved_tasks = (saved.get("data") or {}).get("tasks")
    current_tasks = (current.get("data") or {}).get("tasks")
    if not (isinstance(saved_tasks, list) and isinstance(current_tasks, list) and len(saved_tasks) == len(current_tasks)):
        return saved
    defaults = _task_defaults()
    filled = []
    for was, now in zip(saved_tasks, current_tasks, strict=True):
        if isinstance(was, dict) and isinstance(now, dict):
            was = {**was, **{key: value for key, value in now.items()
                             if key not in was and value == defaults.get(key, _MISSING)}}
        filled.append(was)
    return {**saved, "data": {**saved["data"], "tasks": filled}}


def config_differences(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """`["alpha: 0.25 -> 0.5", "eval.stride: (not in the saved config) -> 8"]`; empty when the configs agree."""
    saved = _with_added_task_settings(saved, current)
    old, new, defaults = flatten(saved), flatten(current), _defaults()
    differences = []
    for key in sorted(old.keys() | new.keys()):
        was, now = old.get(key, _MISSING), new.get(key, _MISSING)
        if was is _MISSING and now == defaults.get(key, _MISSING):
            continue  # a setting newer code added, at the default that keeps the older behaviour
        if was != now:
            differences.append(f"{key}: {_show(was)} -> {_show(now)}")
    return differences


def _show(value: Any) -> str:
    if value is _MISSING:
        return "(not in this config)"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
