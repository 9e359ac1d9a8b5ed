"""One run from a validated config to a finished run directory (no Hydra here; `mer.run` calls it).

Order: join the data-parallel job if launched as one -> resolve the run directory and take its lock
(rank 0; `mer.rundir.lock`: a directory another live process owns is refused) -> skip if
completed -> refuse a directory holding a different config (or a checkpoint of another world size)
-> prepare data (cached; rank 0 first) and check budgets -> build the trainer -> fit (resuming if a
checkpoint exists) -> write summary.json -> print the forgetting table. However the run ends after the
checks (an error, a signal even during start-up, a full disk), summary.json records it (`mer.rundir.status`).

With several processes every rank reads the run directory, and only rank 0 writes it.
"""

from __future__ import annotations

import json
import logging
import platform
import shlex
from pathlib import Path
from typing import Any

import numpy as np

import mer
from mer.config.diff import config_differences
from mer.config.run_config import RunConfig
from mer.config.run_name import run_name_problem
from mer.data.corpus import DataError
from mer.data.pipeline import prepare_data
from mer.data.stream import TaskSequence
from mer.evaluation import metrics as metric_maths
from mer.evaluation.windows import eval_fingerprint, fingerprint_id
from mer.hf.export import exported_models
from mer.hf.run_files import TOKENIZER_DIR, keep_run_files
from mer.parallel import distributed
from mer.parallel.sharding import check_parallel
from mer.rundir.checkpoint import find_checkpoint
from mer.rundir.integrity import start_over_hint
from mer.rundir.layout import (
    CONFIG_JSON,
    CONFIG_YAML,
    METRICS_FILE,
    NON_SEMANTIC_KEYS,
    SUMMARY_FILE,
    MetricsLog,
    RunLock,
    read_json,
    read_json_checked,
    write_atomic,
)
from mer.rundir.provenance import record_attempt
from mer.rundir.resume_check import check_model_size, check_run_directory, refuse_unrecorded_config
from mer.rundir.status import COMPLETED, RUNNING, StatusWriter, StopSignal, how_it_ended
from mer.signals.startup_signals import stop_on_signals
from mer.trackers.dispatch import close_trackers, open_trackers

log = logging.getLogger(__name__)


class RunConfigMismatch(ValueError):
    """The run directory already holds a run with a different config."""


def _semantic(config: dict[str, Any]) -> dict[str, Any]:
    """The config without the keys that do not change what is computed (paths, logging, device)."""
    config = json.loads(json.dumps(config))
    for key in NON_SEMANTIC_KEYS:
        node = config
        *parents, leaf = key.split(".")
        for parent in parents:
            node = node.get(parent, {})
        node.pop(leaf, None)
    return config


def versions() -> dict[str, str]:
    import torch
    import transformers

    return {"python": platform.python_version(), "torch": torch.__version__,
            "transformers": transformers.__version__, "mer": mer.__version__}


def summarize(records: list[dict], tasks: list[str]) -> dict[str, Any]:
    """Metrics and the loss matrix from the eval lines of metrics.jsonl (mer.evaluation.metrics does the maths)."""
    evals = [r for r in records if r["event"] == "eval"]
    # [n_evals, n_tasks]; a loss written as null (not finite: JSON has no NaN) is NaN again
    losses = np.array([[r["val_loss"][t] for t in tasks] for r in evals], dtype=float)
    index = np.array([r["task_index"] for r in evals])
    boundary = np.array([r["boundary"] for r in evals])
    # Interpolations done per task: the differences of the running count at the boundary evaluations.
    at_boundaries = [0] + [int(r.get("reptile_steps", 0)) for r in evals if r["boundary"]]
    reptile_per_task = dict(zip(tasks, np.diff(at_boundaries).tolist(), strict=True))
    metrics = metric_maths.summary_metrics(losses, index, boundary, task_names=tasks)
    return {"metrics": metrics, "metrics_undefined": metric_maths.undefined_reasons(metrics, len(tasks)),
            "loss_matrix": metric_maths.loss_matrix(losses, index, boundary).tolist(),
            "reptile_steps_per_task": reptile_per_task}


def _number(value: float | None, digits: int = 3) -> str:
    """A metric for the table; null (undefined, see summary.json's metrics_undefined) and NaN as n/a."""
    return "n/a" if value is None or value != value else f"{value:.{digits}f}"


def format_summary(summary: dict[str, Any]) -> str:
    tasks, matrix = summary["tasks"], summary["loss_matrix"]
    width = max(8, *(len(t) + 2 for t in tasks))
    lines = [f"run {summary['run_name']}: {summary['n_params']:,} parameters "
             f"({summary['n_params_nonembedding']:,} non-embedding), {summary['wall_time_s']:.0f} s",
             "validation loss (nats/token) after each task (rows) on each task (columns):",
             f"{'after':<{width}}" + "".join(f"{t:>{width}}" for t in tasks)]
    for name, row in zip(tasks, matrix):
        lines.append(f"{name:<{width}}" + "".join(f"{_number(v):>{width}}" for v in row))
    m = summary["metrics"]
    lines.append(f"learned loss {_number(m['learned_loss'], 4)}  retained loss {_number(m['retained_loss'], 4)}  "
                 f"forgetting {_number(m['forgetting'], 4)}  backward transfer {_number(m['backward_transfer'], 4)}")
    return "\n".join(lines)


def run_training(cfg: RunConfig, run_name: str, resolved_config: dict[str, Any]) -> dict[str, Any]:
    """Train (or resume, or skip) the run `run_name`; returns its summary.

    Launched by torchrun or `srun` with several tasks, this process is one rank of a data-parallel job
    (`mer.parallel.distributed`); otherwise it is the whole job.
    """
    from mer.training.trainer import check_world_size

    dist = distributed.setup(cfg.device, cfg.precision)
    try:
        check_world_size(cfg, dist.world_size)  # before any work
        summary = _run_training(cfg, run_name, resolved_config, dist)
    except BaseException:
        distributed.teardown(dist, clean=False)
        raise
    distributed.teardown(dist)
    return summary


def _run_training(cfg: RunConfig, run_name: str, resolved_config: dict[str, Any],
                  dist: distributed.Distributed) -> dict[str, Any]:
    problem = run_name_problem(run_name)  # a name given by a caller other than mer.run (a sweeper, a script)
    if problem is not None:
        raise RunConfigMismatch(problem)
    run_dir = Path(cfg.runs_dir).expanduser() / run_name
    # One owner per run directory (mer.rundir.lock): rank 0 takes the lock before anything there is read or
    # written, and holds it to the end; the other ranks only read, after it, and stop with it if it is refused.
    lock = RunLock(run_dir) if dist.is_main else None
    dist.main_first(lock.acquire if lock is not None else (lambda: None))
    try:
        return _run_owned(cfg, run_name, resolved_config, dist, run_dir, lock)
    finally:
        if lock is not None:
            lock.release()


def _run_owned(cfg: RunConfig, run_name: str, resolved_config: dict[str, Any], dist: distributed.Distributed,
               run_dir: Path, lock: RunLock | None) -> dict[str, Any]:
    summary_path = run_dir / SUMMARY_FILE
    config_path = run_dir / CONFIG_JSON
    saved, unreadable = read_json_checked(config_path)
    if saved is None:
        refuse_unrecorded_config(run_dir, config_path, unreadable)
    differences = config_differences(_semantic(saved), _semantic(resolved_config)) if saved is not None else []
    if differences:
        shown = "; ".join(differences[:5]) + (f"; and {len(differences) - 5} more" if len(differences) > 5 else "")
        raise RunConfigMismatch(
            f"{run_dir} holds a run with a different config ({shown}); use another run_name/runs_dir, "
            f"or start over with `rm -r {shlex.quote(str(run_dir))}` (the earlier run's files go with it)"
        )
    previous = read_json(summary_path)
    if previous is not None and previous.get("status") == COMPLETED:
        log.info("run %s is already completed; skipping", run_name)
        if dist.is_main:
            print(format_summary(previous))
        return previous
    saved_world = (previous or {}).get("world_size")
    if saved_world not in (None, dist.world_size) and find_checkpoint(run_dir) is not None:
        raise RunConfigMismatch(
            f"{run_dir} holds a checkpoint written by {saved_world} processes, this job has {dist.world_size}; "
            f"resume with the same number of processes (torchrun --nproc_per_node / srun --ntasks {saved_world})"
        )
    sharded = check_parallel(cfg.parallel, dist.device, dist.world_size, cfg.fsdp_on_cpu)
    if (previous or {}).get("sharded", sharded) != sharded and find_checkpoint(run_dir) is not None:
        was, now = ("fsdp", "ddp") if previous["sharded"] else ("ddp", "fsdp")
        raise RunConfigMismatch(f"{run_dir} holds a checkpoint written with parallel={was}, this job uses "
                                f"parallel={now}; resume with parallel={was}")
    # Checkpoint files against their sha256s, metrics.jsonl against the checkpoint, before any work (rank 0; the
    # others stop too if it refuses): mer.rundir.resume_check.
    def check_on_main() -> None:
        if dist.is_main:
            check_run_directory(run_dir)
            check_model_size(run_dir, (previous or {}).get("n_params"))

    dist.main_first(check_on_main)
    dist.barrier()  # every rank has read the run directory before rank 0 writes to it

    # From here on the run is this process's: however it ends (an error, a signal even during start-up, a full
    # disk), summary.json says so (mer.rundir.status), on top of the previous summary until the trainer exists. A new
    # run that fails before it wrote anything leaves nothing (the lock takes its empty directory away again).
    status = StatusWriter(summary_path, lock, previous)
    with stop_on_signals() as signals:
        try:
            return _train(cfg, run_name, resolved_config, dist, run_dir, previous, sharded, status)
        except BaseException as error:
            from mer.training.trainer import TrainingStopped

            signals.hold()  # a second Ctrl-C must not cut the status write short
            status.record_end(error)  # raises DiskFull (one line) on a full disk
            if isinstance(error, StopSignal):
                raise TrainingStopped(how_it_ended(error)[1]) from None  # exit 143: stopped, run again to go on
            raise  # a KeyboardInterrupt too (recorded as stopped): whoever raised it wants out at once


def _train(cfg: RunConfig, run_name: str, resolved_config: dict[str, Any], dist: distributed.Distributed,
           run_dir: Path, previous: dict[str, Any] | None, sharded: bool, status: StatusWriter) -> dict[str, Any]:
    config_path = run_dir / CONFIG_JSON
    # A corpus file changed since its preparation is refused here (on_change="refuse"), not silently prepared anew:
    # runs of one sweep would otherwise train on different text. `python -m mer.data.prepare` takes the change.
    prepared = dist.main_first(lambda: prepare_data(cfg.data, on_change="refuse"))  # rank 0 fills the cache
    if previous is not None and previous.get("tokenizer_hash") not in (None, prepared.tokenizer_hash):
        raise DataError(f"{run_dir} was trained with tokenizer {previous['tokenizer_hash']} but the data now "
                        f"gives {prepared.tokenizer_hash}; the shards changed. Train with the data the run started "
                        f"with, or {start_over_hint(run_dir)}")
    # The global block order (world size 1): every rank knows all blocks of a step and reads its own rows.
    sequence = TaskSequence(
        prepared.shards, cfg.model.seq_len, cfg.n_new_per_step, cfg.seed, cfg.task_budgets, cfg.data.budget_steps,
        cfg.data.allow_repeat, cfg.data.eval_tokens,
        replay_blocks_per_step=cfg.n_replay_per_step, replay_current_task=cfg.buffer.replay_current_task,
    )
    if dist.is_main:
        if status.summary is None:  # the directory now holds a run: its status is recorded from here on
            status.summary = {"status": RUNNING, "error": None, "run_name": run_name}
        write_atomic(config_path, json.dumps(resolved_config, indent=2))
        from omegaconf import OmegaConf  # only to write the YAML twin of config.json

        write_atomic(run_dir / CONFIG_YAML, OmegaConf.to_yaml(OmegaConf.create(resolved_config)))

    from mer.training.trainer import Trainer

    task_folders = [prepared.cloze_dir] if prepared.cloze_dir is not None else []
    # The run directory keeps its tokenizer (and a base model's configs) so that it exports on its own, whatever
    # happens later to the data folder or to model.init_from (mer.hf.run_files); rank 0 alone exports and scores.
    files_hash, tokenizer_dir = None, prepared.tokenizer_dir
    if dist.is_main:
        files_hash = keep_run_files(run_dir, prepared.tokenizer_dir, cfg.model.init_from)
        tokenizer_dir = run_dir / TOKENIZER_DIR
    trainer = Trainer(cfg, sequence, len(prepared.tokenizer), run_dir, dist, tokenizer_dir, task_folders)
    summary: dict[str, Any] = {
        "status": RUNNING, "error": None, "run_name": run_name, "tasks": sequence.names,
        "n_params": trainer.n_params, "n_params_nonembedding": trainer.n_params_nonembedding,
        "tokenizer_hash": prepared.tokenizer_hash, "tokenizer_files_hash": files_hash, "metrics": None, "loss_matrix": None, "totals": None,
        "wall_time_s": 0.0, "versions": versions(), "world_size": dist.world_size,
        "sharded": sharded,
        "steps_per_task": {t.name: t.steps for t in sequence.tasks},
        "init_from": cfg.model.init_from, "exported_models": exported_models(run_dir, sequence.names),
        # The harness task folder of the built-in bible_cloze (`lm_eval --include_path`), as preparation printed it.
        "cloze_dir": str(prepared.cloze_dir) if prepared.cloze_dir is not None else None,
    }
    # Which tokens, windows and tokenizer the losses were measured on: the analysis compares only runs that agree.
    fingerprint = eval_fingerprint(prepared.tokenizer_hash, *cfg.eval.windows(cfg.model.seq_len),
                                   {task.name: task.eval_tokens for task in sequence.tasks})
    summary.update(eval_fingerprint=fingerprint, eval_fingerprint_id=fingerprint_id(fingerprint))
    if dist.is_main:  # this attempt's commit and command; not in the config, so newer code may resume the run
        summary["provenance"] = record_attempt(run_dir, previous)
        status.summary = summary
    # Every record of metrics.jsonl also goes to TensorBoard / MLflow / W&B (logger=[...]), opened before training.
    trackers = open_trackers(cfg.logger, run_dir, run_name, Path(cfg.runs_dir), resolved_config) if dist.is_main else None
    if trackers is not None:
        trainer.metrics.on_append = trackers.record
    status.write()
    log.info("run %s: %s parameters, %d steps over tasks %s -> %s", run_name, f"{trainer.n_params:,}",
             sequence.total_steps, sequence.names, run_dir)
    if trainer.peak_flops is not None:
        log.info("MFU against %.4g FLOP/s per device (%s) x %d", trainer.peak_flops, trainer.peak_source,
                 dist.world_size)
    try:
        trainer.fit()
    except BaseException as error:
        # The caller writes the status (mer.rundir.status); the trackers get the summary with it now.
        ended, reason = how_it_ended(error)
        summary.update(status=ended, error=reason, wall_time_s=trainer.position.wall_time)
        close_trackers(trackers, summary)
        raise
    summary.update(status=COMPLETED, totals={**trainer.flops.as_dict(), "steps": trainer.position.step},
                   wall_time_s=trainer.position.wall_time, exported_models=exported_models(run_dir, sequence.names))
    if dist.is_main:
        summary.update(summarize(MetricsLog(run_dir / METRICS_FILE).records(), sequence.names))
        status.write()
        close_trackers(trackers, summary)
        print(format_summary(summary))
    return summary
