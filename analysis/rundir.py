"""Read one run directory (config, metrics.jsonl, summary.json) into plain Python values.

Field names follow docs/run_directory.md; the files are found and read through `mer.rundir.layout`, which owns
the format (config.json, or config.yaml when config.json cannot be read; the status as readers report
it). Nothing here raises for a broken run: a run that cannot be read fully is returned with what could
be read and a list of `problems`, so the analysis can flag it instead of dropping it silently. A run
whose settings cannot be read (no readable config, or one without alpha, k, eps, seed or model) is never
analysed on guessed values: `unusable` says why, and the run is left out of fits and tables.

Resumed runs: after a crash, the trainer resumes from its last checkpoint and logs again the steps
after it, so metrics.jsonl can hold a stretch of steps twice. When a record's step is smaller than
the previous record's step, the records of the abandoned attempt with a step >= the new one are
dropped; afterwards, exact repeats of (event, step, boundary) keep the last copy.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from analysis.model_identity import model_shape
from mer.rundir.layout import (
    CONFIG_JSON,
    CONFIG_YAML,
    METRICS_FILE,
    SUMMARY_FILE,
    effective_status,
    read_config,
    read_json_checked,
)

SETTING_KEYS = ("alpha", "k", "eps", "seed", "model")
"""The config keys the analysis groups by: a run lacking one has unknown settings."""


@dataclass
class RunData:
    """Everything the analysis needs from one run directory."""

    path: Path
    name: str
    settings: dict[str, Any]
    """alpha, k, eps, seed, model (the recorded name), model_shape (`analysis.model_identity.model_shape`), tasks (list of task names), reptile (bool: interpolations
    happened), reptile_steps (their number, None if unknown), reptile_configured (k > 0 and eps < 1)."""
    records: list[dict[str, Any]]
    """metrics.jsonl records (train and eval) after resume cleanup, in order."""
    summary: dict[str, Any] | None
    problems: list[str] = field(default_factory=list)
    status: str = "unknown"
    """As readers report it (`mer.rundir.status`): a `running` run whose process is gone is `interrupted`."""
    unusable: list[str] = field(default_factory=list)
    """Why the run must be left out of fits and tables whatever its losses (its settings are unknown)."""

    @property
    def evals(self) -> list[dict[str, Any]]:
        return [r for r in self.records if r.get("event") == "eval"]


def is_run_dir(path: Path) -> bool:
    """A run directory has metrics.jsonl, or a config (config.json or config.yaml) and summary.json (a run that
    just started). A refused point (summary.json alone) is none; nor is a model folder (config.json alone)."""
    has_config = (path / CONFIG_JSON).is_file() or (path / CONFIG_YAML).is_file()
    return (path / METRICS_FILE).is_file() or (has_config and (path / SUMMARY_FILE).is_file())


def read_run(path: Path) -> RunData:
    """Read a run directory; problems are recorded on the result, never raised."""
    path = Path(path)
    problems: list[str] = []
    unusable: list[str] = []
    config = _read_config(path, problems, unusable)
    summary = _read_summary(path / SUMMARY_FILE, problems)
    records = _read_metrics(path / METRICS_FILE, problems)
    settings = run_settings(config, summary, records)
    if settings["reptile_configured"] and not settings["reptile"]:
        problems.append(f"Reptile was configured (k={settings['k']}, eps={settings['eps']:g}) but never interpolated: "
                        "counted as Reptile off")
    if not settings["tasks"]:
        problems.append("task sequence unknown: config.yaml has no data.tasks and there is no evaluation")
    name = str(summary.get("run_name")) if summary and summary.get("run_name") else path.name
    return RunData(path=path, name=name, settings=settings, records=records, summary=summary, problems=problems,
                   status=effective_status(path, summary), unusable=unusable)


def run_settings(config: dict[str, Any], summary: dict[str, Any] | None, records: list[dict[str, Any]]) -> dict[str, Any]:
    """The knobs the analysis groups by.

    "Reptile" means what happened, not what was asked for: the run counts as Reptile when it interpolated
    at least once (summary.json's totals, else the last metrics record's running count). Only a run that
    recorded no count at all (written before the count existed) falls back to the config: k > 0 and eps < 1.
    """
    alpha = _float(config.get("alpha"), default=0.0)
    k = int(_float(config.get("k"), default=0.0) or 0)
    eps = _float(config.get("eps"), default=1.0)
    model = config.get("model")
    model_name = str(model.get("name")) if isinstance(model, dict) else (str(model) if model is not None else "unknown")
    data = config.get("data")
    tasks: list[str] = []
    if isinstance(data, dict) and isinstance(data.get("tasks"), list):
        tasks = [str(t.get("name")) if isinstance(t, dict) else str(t) for t in data["tasks"]]
    if not tasks and summary and isinstance(summary.get("tasks"), list):
        tasks = [str(t) for t in summary["tasks"]]
    if not tasks:
        first = next((r for r in records if r.get("event") == "eval" and isinstance(r.get("val_loss"), dict)), None)
        tasks = list(first["val_loss"]) if first else []
    seed = config.get("seed")
    configured = bool(k > 0 and eps < 1.0)
    steps = reptile_steps(summary, records)
    return {
        "alpha": alpha,
        "k": k,
        "eps": eps,
        "seed": int(seed) if isinstance(seed, int | float) and not isinstance(seed, bool) else -1,
        "model": model_name,
        "model_shape": model_shape(model),
        "tasks": tasks,
        "reptile": configured if steps is None else steps > 0,
        "reptile_steps": steps,
        "reptile_configured": configured,
    }


def reptile_steps(summary: dict[str, Any] | None, records: list[dict[str, Any]]) -> int | None:
    """Reptile interpolations the run did: summary totals, else the last metrics record; None if neither says."""
    totals = (summary or {}).get("totals")
    if isinstance(totals, dict) and isinstance(totals.get("reptile_steps"), int | float):
        return int(totals["reptile_steps"])
    for rec in reversed(records):
        if isinstance(rec.get("reptile_steps"), int | float):
            return int(rec["reptile_steps"])
    return None


def clean_resumed(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Drop records of an abandoned attempt that a resume re-did (see the module docstring)."""
    kept: list[dict[str, Any]] = []
    for rec in records:
        step = rec.get("step")
        if isinstance(step, int | float) and kept and step < kept[-1].get("step", -math.inf):
            kept = [r for r in kept if r.get("step", -math.inf) < step]
        kept.append(rec)
    last: dict[tuple, int] = {}
    for i, rec in enumerate(kept):
        last[(rec.get("event"), rec.get("step"), bool(rec.get("boundary", False)))] = i
    return [rec for i, rec in enumerate(kept) if last[(rec.get("event"), rec.get("step"), bool(rec.get("boundary", False)))] == i]


def _read_config(run_dir: Path, problems: list[str], unusable: list[str]) -> dict[str, Any]:
    """The run's config (mer.rundir.layout.read_config); a config that cannot be read, or lacks a setting, makes the run
    unusable rather than analysed with a guess."""
    read = read_config(run_dir)
    if read.config is None:
        reason = f"settings unknown, no readable config: {'; '.join(read.problems)}"
        problems.append(f"{reason}; left out of fits and tables")
        unusable.append(reason)
        return {}
    if read.problems:  # one of the twins is damaged, the other was read
        problems.append(f"{'; '.join(read.problems)}; settings read from {read.source.name}")
    missing = [key for key in SETTING_KEYS if key not in read.config]
    if missing:
        reason = f"{read.source} has no {', '.join(missing)}: settings unknown"
        problems.append(f"{reason}; left out of fits and tables")
        unusable.append(reason)
    return read.config


def _read_summary(path: Path, problems: list[str]) -> dict[str, Any] | None:
    summary, wrong = read_json_checked(path)
    if wrong == "missing":
        problems.append("no summary.json (run never started properly?): status and model size unknown")
    elif wrong == "not an object":
        problems.append("summary.json is not an object; ignored")
    elif wrong is not None:
        problems.append(f"summary.json {wrong}; status and model size unknown")
    return summary


def _read_metrics(path: Path, problems: list[str]) -> list[dict[str, Any]]:
    if not path.is_file():
        problems.append("no metrics.jsonl: the run has logged nothing yet")
        return []
    records = []
    bad: list[int] = []
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except ValueError:
                bad.append(lineno)
                continue
            if isinstance(rec, dict):
                records.append(rec)
            else:
                bad.append(lineno)
    if bad:
        problems.append(f"metrics.jsonl: skipped {len(bad)} unreadable line(s) (first: line {bad[0]}; a truncated write?)")
    cleaned = clean_resumed(records)
    if len(cleaned) < len(records):
        problems.append(f"metrics.jsonl: dropped {len(records) - len(cleaned)} record(s) repeated by a resume")
    return cleaned


def _float(value: Any, default: float) -> float:
    if value is None:
        return default
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan
