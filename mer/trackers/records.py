"""What the trackers receive: metrics.jsonl records, the config and summary.json turned into flat numbers.

Every numeric field of a record becomes the metric `<event>/<field>` at the record's `step` (nested dicts such as
`val_loss` give `eval/val_loss/<task>`), so each (metric, step) pair occurs once per run: there is at most one
train line and one evaluation per step (docs/run_directory.md). Booleans become 0/1; strings (the task name,
also given as `task_index`) and nulls (an unknown MFU) are left out. The summary's metrics become `summary/...`.
"""

from __future__ import annotations

import json
import re
from typing import Any

_UNSAFE = re.compile(r"[^A-Za-z0-9_\-./ ]")  # MLflow's rule for metric and parameter names


def metric_name(*parts: str) -> str:
    """`train`, `loss` -> `train/loss`; characters some tracker refuses become `_`."""
    return _UNSAFE.sub("_", "/".join(parts))


def _numbers(prefix: str, value: Any, out: dict[str, float]) -> None:
    if isinstance(value, (bool, int, float)):  # booleans (eval's `boundary`) become 0/1
        out[prefix] = float(value)
    elif isinstance(value, dict):
        for key, item in value.items():
            _numbers(metric_name(prefix, str(key)), item, out)


def record_metrics(record: dict[str, Any]) -> dict[str, float]:
    """A metrics.jsonl record -> {metric name: value}, without its step (the x of every point)."""
    out: dict[str, float] = {}
    event = str(record.get("event", "record"))
    for key, value in record.items():
        if key not in ("event", "step"):
            _numbers(metric_name(event, key), value, out)
    return out


def summary_metrics(summary: dict[str, Any]) -> dict[str, float]:
    """summary.json -> `summary/<metric>` (learned/retained loss, forgetting...), `summary/totals/...` and
    `summary/wall_time_s`; NaN (one task's forgetting) is kept, a tracker shows it as such."""
    out: dict[str, float] = {}
    _numbers("summary", summary.get("metrics") or {}, out)
    _numbers("summary/totals", summary.get("totals") or {}, out)
    _numbers("summary/wall_time_s", summary.get("wall_time_s"), out)
    return out


def status_of(summary: dict[str, Any]) -> str:
    """running, completed, failed, or stopped (a signal checkpointed the run: launching it again resumes it)."""
    status = summary.get("status", "running")
    if status == "running" and summary.get("error"):
        return "stopped"
    return str(status)


def flatten_config(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested config -> {"model.d_model": 256, ...}; lists become JSON text, so each value is one scalar."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten_config(value, name + "."))
        elif isinstance(value, (list, tuple)):
            flat[name] = json.dumps(value)
        else:
            flat[name] = value
    return flat
