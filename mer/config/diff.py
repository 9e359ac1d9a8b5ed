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


def config_differences(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """`["alpha: 0.25 -> 0.5", "eval.stride: (not in the saved config) -> 8"]`; empty when the configs agree."""
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
