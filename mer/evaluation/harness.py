"""lm-evaluation-harness (the optional extra `pip install -e ".[eval]"`): score a model, keep the results.

Both users of the harness come through here: `python -m mer.downstream`, which scores exported models
from their folders, and the trainer's `eval.downstream`, which scores the live model at task boundaries.
The model always goes through the harness' own Hugging Face class (`HFLM`), so the numbers are those
`lm_eval --model hf` gives for the same folder.

Results become records, one per model x task x metric, in `<run dir>/downstream.jsonl` (fields in
docs/run_directory.md); writing them again for the same model, task, metric and `limit` replaces the old ones.
Scores on a subset (`--limit N`, `eval.downstream_limit`) are kept apart from full-set scores: they never
replace them, nor are they replaced by them.
Task names are looked up first among the given task folders alone (the built-in `bible_cloze` needs
nothing else, and indexing the harness' 10,000+ tasks takes seconds), then among all of the harness'.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import math
import random
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mer.rundir.layout import strict_dumps, write_atomic

log = logging.getLogger(__name__)

DOWNSTREAM_FILE = "downstream.jsonl"
INSTALL_HINT = 'pip install -e ".[eval]" (lm-evaluation-harness, an optional extra of mer)'
HEADLINE_METRICS = ("acc_mutual_info", "acc_norm", "acc")
"""The metric shown for a task, the first it has: acc_mutual_info where a task asks for it (bible_cloze: what the
context adds, the informative one for small models), else acc_norm (the usual headline of hellaswag, arc...),
else acc; a task with none of them shows its first metric."""


class HarnessError(ValueError):
    """The harness is missing, or a task name is unknown to it."""


def require_harness(what: str) -> None:
    """Raise HarnessError naming `what` and the install command when lm-evaluation-harness is not installed."""
    if importlib.util.find_spec("lm_eval") is None:
        raise HarnessError(f"{what} needs lm-evaluation-harness, which is not installed: {INSTALL_HINT}")


def harness_version() -> str:
    from importlib.metadata import version

    return version("lm_eval")


def task_manager(tasks: Sequence[str], include_paths: Sequence[Path | str]):
    """A TaskManager that knows every name in `tasks`; raises HarnessError listing the unknown ones."""
    require_harness("downstream evaluation")
    from lm_eval.tasks import TaskManager

    paths = [str(p) for p in include_paths]
    if paths:
        local = TaskManager(include_path=paths, include_defaults=False)
        if all(t in local.all_tasks for t in tasks):
            return local
    manager = TaskManager(include_path=paths or None)
    unknown = [t for t in tasks if t not in manager.all_tasks]
    if unknown:
        raise HarnessError(f"unknown harness task(s) {unknown}: the built-in one is bible_cloze (or bible_cloze_<task>); "
                           "list the harness' tasks with `lm_eval ls tasks`, or give a folder of your own task YAML "
                           "with --include-path (eval.downstream_include during training)")
    return manager


@contextmanager
def _rng_kept() -> Iterator[None]:
    # simple_evaluate seeds Python's, numpy's and torch's global generators: a run that evaluates at task
    # boundaries must train exactly as one that does not, so every generator is put back afterwards.
    states = (random.getstate(), np.random.get_state(), torch.get_rng_state(),
              torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None)
    try:
        yield
    finally:
        random.setstate(states[0])
        np.random.set_state(states[1])
        torch.set_rng_state(states[2])
        if states[3] is not None:
            torch.cuda.set_rng_state_all(states[3])


def evaluate(model, tokenizer, tasks: Sequence[str], manager, *, limit: int | None = None, batch_size: int = 32,
             num_fewshot: int | None = None, device: str | None = None, bf16: bool = False) -> list[dict[str, Any]]:
    """Score `model` (a folder path, or a loaded transformers model with its `tokenizer`) on `tasks`; the records.

    A loaded model is scored as it is (its device, its weights) and left in eval mode; the caller puts it back
    into training. `limit` caps the documents per task (the harness' --limit). Raises HarnessError without the
    harness; the harness' own errors (a task's data it cannot load offline, ...) go through unchanged.
    """
    require_harness("downstream evaluation")
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM

    extra = {"mixed_precision_dtype": "bfloat16"} if bf16 else {}
    if isinstance(model, (str, Path)):
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        lm = HFLM(pretrained=str(model), batch_size=batch_size, device=device, dtype="float32", **extra)
    else:
        lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size, **extra)
    with _rng_kept():
        results = simple_evaluate(model=lm, tasks=list(tasks), task_manager=manager, limit=limit,
                                  num_fewshot=num_fewshot, log_samples=False, bootstrap_iters=1000)
    return records_from(results, limit)


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):  # the harness writes "N/A" for an stderr it did not compute
        return None
    return number if math.isfinite(number) else None


def records_from(results: dict[str, Any], limit: int | None = None) -> list[dict[str, Any]]:
    """One record per task (and group) x metric of a `simple_evaluate` result: value, stderr, sample count."""
    records = []
    groups = set(results.get("groups", {}))
    for task, metrics in results["results"].items():
        for key, value in metrics.items():
            metric, _, filter_name = key.partition(",")
            # sample_len is a count the harness reports beside the metrics, not a score
            if key == "alias" or metric.endswith("_stderr") or metric == "sample_len" or _number(value) is None:
                continue
            samples = results.get("n-samples", {}).get(task, {})
            records.append({
                "task": task, "metric": metric, "filter": filter_name or "none", "value": _number(value),
                "stderr": _number(metrics.get(f"{metric}_stderr,{filter_name}")),
                "n_samples": samples.get("effective"), "num_fewshot": results.get("n-shot", {}).get(task),
                "group": task in groups, "limit": limit,
            })
    return records


def headline(records: list[dict[str, Any]], names: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """One record per task (`names`, else every task and group in the records): its HEADLINE_METRICS one."""
    names = list(dict.fromkeys(r["task"] for r in records)) if names is None else names
    chosen = []
    for name in names:
        mine = [r for r in records if r["task"] == name]
        ranked = sorted(mine, key=lambda r: HEADLINE_METRICS.index(r["metric"]) if r["metric"] in HEADLINE_METRICS
                        else len(HEADLINE_METRICS))
        if ranked:
            chosen.append(ranked[0])
    return chosen


def record_results(run_dir: Path, records: list[dict[str, Any]]) -> Path:
    """Add `records` to the run's downstream.jsonl, replacing earlier records of the same model, task, metric,
    filter and limit (a score on N documents never replaces a full-set score, module docstring); written
    atomically (a reader sees the old file or the new one)."""
    path = run_dir / DOWNSTREAM_FILE
    key = lambda r: (r.get("model"), r.get("task"), r.get("metric"), r.get("filter"), r.get("limit"))  # noqa: E731
    new = {key(r) for r in records}
    kept = [r for r in read_records(run_dir) if key(r) not in new]
    write_atomic(path, "".join(strict_dumps(r) + "\n" for r in kept + records))
    return path


def read_records(run_dir: Path) -> list[dict[str, Any]]:
    """The records of a run's downstream.jsonl (none when it has no such file)."""
    path = run_dir / DOWNSTREAM_FILE
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
