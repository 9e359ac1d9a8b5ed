"""`eval.downstream`: harness tasks scored on the live model at every task boundary, for one-command runs.

The trainer calls `score` on rank 0 after the boundary evaluation. Records go to the run's
downstream.jsonl exactly as `python -m mer.downstream` writes them (model `after_<task>`, source
`training`), the tokens the harness forwarded are counted as evaluation FLOPs (a forward pre-hook counts
every input token, padding included, so the count is what was computed), and a short note with the
scores is shown in the progress line until the next boundary. The scores also become one metrics.jsonl record
(`scores_record`, event `downstream`), which the experiment trackers mirror like every other record.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from mer.config.run_config import RunConfig

log = logging.getLogger(__name__)


class LiveDownstream:
    """Scores a live model on `cfg.eval.downstream` (task names checked when built: unknown ones raise
    `mer.evaluation.harness.HarnessError` before any training)."""

    def __init__(self, cfg: RunConfig, run_dir: Path, tokenizer_dir: Path | None, task_folders: Sequence[Path]) -> None:
        from transformers import AutoTokenizer

        from mer.evaluation.harness import harness_version, task_manager

        if tokenizer_dir is None:
            raise ValueError("eval.downstream needs the tokenizer's folder (Trainer(tokenizer_dir=...))")
        self.tasks, self.limit, self.batch_size = list(cfg.eval.downstream), cfg.eval.downstream_limit, cfg.eval.batch_size
        self.manager = task_manager(self.tasks, [*task_folders, *cfg.eval.downstream_include])
        # Its own tokenizer instance: the harness sets a padding token on the one it is given.
        self.tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir), local_files_only=True)
        self.run_dir, self.version = run_dir, harness_version()
        self.note = ""
        """Shown in the progress line: the last boundary's scores."""
        self.scores: dict[str, dict[str, float]] = {}
        """The last boundary's scores: harness task (or group) -> metric (and `<metric>_stderr`) -> value."""

    def score(self, model: torch.nn.Module, task_name: str, task_index: int, step: int, bf16: bool) -> int:
        """Score `model` (left in eval mode), record the results as the model after `task_name`; tokens forwarded."""
        from mer.evaluation.harness import evaluate, headline, record_results

        started, forwarded = time.perf_counter(), [0]

        def count(module, args, kwargs):
            ids = kwargs.get("input_ids", args[0] if args else None)
            if ids is not None:
                forwarded[0] += ids.numel()

        handle = model.register_forward_pre_hook(count, with_kwargs=True)
        try:
            records = evaluate(model, self.tokenizer, self.tasks, self.manager, limit=self.limit,
                               batch_size=self.batch_size, bf16=bf16)
        finally:
            handle.remove()
        for record in records:
            record.update(model=f"after_{task_name}", after_task=task_name, task_index=task_index, step=step,
                          source="training", harness=self.version)
        record_results(self.run_dir, records)
        self.scores = {}
        for r in records:
            mine = self.scores.setdefault(r["task"], {})
            mine[r["metric"]] = r["value"]
            if r.get("stderr") is not None:
                mine[f"{r['metric']}_stderr"] = r["stderr"]
        seconds = time.perf_counter() - started
        self.note = f"after {task_name}: " + ", ".join(
            f"{r['task']} {r['metric']} {r['value']:.3f}" for r in headline(records, self.tasks)) + f" ({seconds:.0f} s)"
        log.info("downstream %s", self.note)
        return forwarded[0]


def scores_record(base: dict, scores: dict[str, dict[str, float]]) -> dict:
    """The metrics.jsonl record of a boundary's downstream scores: event `downstream`, the step, task and task index
    of `base` (the trainer's record fields), and per harness task its metrics, which the trackers show as
    `downstream/<harness task>/<metric>` (mer.trackers.records)."""
    kept = {key: base[key] for key in ("step", "task", "task_index") if key in base}
    return {"event": "downstream", **kept, **{task: dict(values) for task, values in scores.items()}}
