"""bench_trainer.py's parts (`--parts`), each measured in interleaved rounds and returned as a dict of
raw timings: step (train_step vs the plain loop, with Reptile inside its rounds), fit, alignment, wait
(data-wait share with buffer prefetch off and on) and trackers (experiment trackers' overhead)."""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import replace

import numpy as np
from rounds import log, med, rotated
from trainer_setup import Ctx, PlainLoop, make_trainer, task_sequence, time_reptile, timed, trainer_steps

from mer.optim.reptile import Reptile, ReptileConfig
from mer.training.trainer import Trainer


def bench_step(ctx: Ctx, model: str, steps: int, rounds: int, reptile_reps: int, do_reptile: bool) -> dict:
    """Rounds of `steps` trainer steps and `steps` plain steps (order alternating), plus Reptile timings."""
    cfg = ctx.cfg(model)
    sequence = task_sequence(cfg, ctx.prepared, budget_steps=1000, allow_repeat=True)
    trainer = make_trainer(cfg, sequence, ctx.vocab, ctx.scratch, f"step-{model}")
    task = sequence.tasks[0]
    plain = PlainLoop(cfg, ctx.prepared.shards[:1], ctx.vocab)
    reptile = Reptile(ReptileConfig(k=500, eps=0.1, anchor_device="cpu"), trainer.model.parameters())
    reptile.reset_anchor(0)
    trainer_steps(trainer, task, 2)  # warm-up (allocator, first-call costs), not timed
    plain.run(2)
    if do_reptile:
        time_reptile(reptile, 1)
    res = {"trainer": [], "plain": [], "trainer_cpu": [], "plain_cpu": [], "reptile": [], "data_wait": []}
    for r in range(rounds):
        if r % max(1, rounds // 4) == 0:
            log(f"  step {model}: round {r + 1}/{rounds}")
        for which in rotated(("trainer", "plain"), r):
            if which == "trainer":
                w0 = trainer.data_wait_s
                wall, cpu = timed(trainer_steps, trainer, task, steps)
                res["data_wait"].append(trainer.data_wait_s - w0)
                if do_reptile:
                    res["reptile"].append(med(time_reptile(reptile, reptile_reps)))
            else:
                wall, cpu = timed(plain.run, steps)
            res[which].append(wall)
            res[f"{which}_cpu"].append(cpu)
    return {"model": model, "seq_len": cfg.model.seq_len, "batch": cfg.optim.batch_size, "steps": steps,
            "rounds": rounds, "n_params": trainer.n_params,
            "tokens_per_round": steps * cfg.optim.batch_size * cfg.model.seq_len, **res}


def bench_fit(ctx: Ctx, model: str, rounds: int, n_tasks: int) -> dict:
    """Rounds of one short fit() and the plain loop over the same steps (order alternating).

    After each fit, one more evaluate() and save() of the finished trainer are timed, to split the
    fit overhead into its parts.
    """
    cfg = ctx.cfg(model)
    res = {"fit": [], "plain": [], "eval": [], "save": []}
    steps_per_task = n_evals = n_saves = None
    for r in range(rounds):
        log(f"  fit {model}: round {r + 1}/{rounds}")
        for which in rotated(("fit", "plain"), r):
            sequence = task_sequence(cfg, ctx.prepared, n_tasks=n_tasks)
            steps_per_task = [t.steps for t in sequence.tasks]
            if which == "fit":
                trainer = make_trainer(cfg, sequence, ctx.vocab, ctx.scratch, f"fit-{model}")
                saves = []
                save = trainer.save

                def counting_save():
                    saves.append(1)
                    save()

                trainer.save = counting_save
                started = time.perf_counter()
                trainer.fit()
                res["fit"].append(time.perf_counter() - started)
                n_evals = sum(1 for rec in trainer.metrics.records() if rec["event"] == "eval")
                n_saves = len(saves)
                trainer.position.task_index = n_tasks - 1  # fit() leaves it one past the last task
                started = time.perf_counter()
                trainer.evaluate(boundary=False)
                res["eval"].append(time.perf_counter() - started)
                started = time.perf_counter()
                save()
                res["save"].append(time.perf_counter() - started)
                shutil.rmtree(trainer.run_dir, ignore_errors=True)
            else:
                plain = PlainLoop(cfg, ctx.prepared.shards[:n_tasks], ctx.vocab)
                started = time.perf_counter()
                for i, n in enumerate(steps_per_task):
                    plain.run(n, task=i)
                res["plain"].append(time.perf_counter() - started)
    total_steps = sum(steps_per_task)
    return {"model": model, "tasks": n_tasks, "steps_per_task": steps_per_task, "rounds": rounds,
            "evals": n_evals, "saves": n_saves, "steps": total_steps,
            "tokens": total_steps * cfg.optim.batch_size * cfg.model.seq_len, **res}


def bench_alignment(ctx: Ctx, model: str, rounds: int, n_tasks: int) -> dict:
    """Rounds of one short fit() with eval.grad_alignment off and on (order alternating), then one alignment
    measurement of the finished trainer at its last task."""
    base = ctx.cfg(model)
    configs = {False: base, True: replace(base, eval=replace(base.eval, grad_alignment=True))}
    res: dict = {"off": [], "on": [], "measure": [], "evals": None, "steps": None}
    for r in range(rounds):
        log(f"  alignment {model}: round {r + 1}/{rounds}")
        for on in rotated((False, True), r):
            sequence = task_sequence(configs[on], ctx.prepared, n_tasks=n_tasks)
            trainer = make_trainer(configs[on], sequence, ctx.vocab, ctx.scratch, f"align-{model}-{on}")
            started = time.perf_counter()
            trainer.fit()
            res["on" if on else "off"].append(time.perf_counter() - started)
            res["steps"] = trainer.position.step
            res["evals"] = sum(1 for rec in trainer.metrics.records() if rec["event"] == "eval")
            if on:
                started = time.perf_counter()
                trainer.alignment.measure(n_tasks - 1, sequence.names)
                res["measure"].append(time.perf_counter() - started)
                res["windows"] = trainer.alignment.windows[0]
            shutil.rmtree(trainer.run_dir, ignore_errors=True)
    return {"model": model, "tasks": n_tasks, "rounds": rounds, "every": base.eval.every, **res}


def bench_wait(ctx: Ctx, model: str, steps: int, rounds: int, alpha: float) -> dict:
    """Rounds of `steps` steps of two alpha>0 trainers, buffer.prefetch off and on (order alternating)."""
    trainers = {}
    for prefetch in (False, True):
        cfg = ctx.cfg(model, alpha=alpha, prefetch=prefetch)
        sequence = task_sequence(cfg, ctx.prepared, budget_steps=1000, allow_repeat=True)
        trainer = make_trainer(cfg, sequence, ctx.vocab, ctx.scratch, f"wait-{model}-{prefetch}")
        # The middle of a run: the buffer holds all of tasks 1 and 2, training is on task 3.
        for index in (0, 1):
            trainer.buffer.add(index, np.arange(sequence.tasks[index].stream.n_blocks))
        trainer.position.task_index = 2
        trainer_steps(trainer, sequence.tasks[2], 2)  # warm-up
        trainers[prefetch] = (trainer, sequence.tasks[2])
    t_step = {False: [], True: []}
    t_wait = {False: [], True: []}
    for r in range(rounds):
        if r % max(1, rounds // 4) == 0:
            log(f"  wait {model}: round {r + 1}/{rounds}")
        for prefetch in rotated((False, True), r):
            trainer, task = trainers[prefetch]
            w0 = trainer.data_wait_s
            t_step[prefetch].append(trainer_steps(trainer, task, steps))
            t_wait[prefetch].append(trainer.data_wait_s - w0)
    cfg = trainers[False][0].cfg
    return {"model": model, "alpha": alpha, "steps": steps, "rounds": rounds, "n_new": cfg.n_new_per_step,
            "n_replay": cfg.n_replay_per_step, "buffer_blocks": len(trainers[False][0].buffer),
            "t_step": {str(k): v for k, v in t_step.items()}, "t_wait": {str(k): v for k, v in t_wait.items()}}


def bench_trackers(ctx: Ctx, model: str, steps: int, rounds: int) -> dict:
    """Rounds of `steps` logged steps of a metrics.jsonl-only trainer and one trainer per installed tracker."""
    import importlib.util

    from mer.trackers.config import REQUIREMENTS, LoggerConfig, MlflowConfig, TensorBoardConfig, WandbConfig
    from mer.trackers.dispatch import open_trackers

    os.environ.setdefault("WANDB_MODE", "offline")  # never the network, no account needed
    os.environ.setdefault("WANDB_SILENT", "true")
    settings = {"tensorboard": TensorBoardConfig(), "wandb": WandbConfig(mode="offline"),
                "mlflow": MlflowConfig(tracking_uri=f"sqlite:///{ctx.scratch / 'mlflow.db'}")}
    installed = [n for n, (module, _) in REQUIREMENTS.items() if importlib.util.find_spec(module) is not None]
    cfg = ctx.cfg(model)
    variants, opened = ["jsonl", *installed], {}
    for name in variants:
        sequence = task_sequence(cfg, ctx.prepared, budget_steps=1000, allow_repeat=True)
        trainer = make_trainer(cfg, sequence, ctx.vocab, ctx.scratch, f"trackers-{model}-{name}")
        trackers = None
        if name != "jsonl":
            trackers = open_trackers(LoggerConfig(**{name: settings[name]}), trainer.run_dir, f"bench-{name}",
                                     ctx.scratch, {"model": model, "batch": cfg.optim.batch_size})
            trainer.metrics.on_append = trackers.record
        opened[name] = (trainer, sequence.tasks[0], trackers)
        logged_steps(trainer, sequence.tasks[0], 2)  # warm-up
    times: dict[str, list[float]] = {name: [] for name in variants}
    log_times: dict[str, list[float]] = {name: [] for name in variants}
    for r in range(rounds):
        if r % max(1, rounds // 4) == 0:
            log(f"  trackers {model}: round {r + 1}/{rounds}")
        for name in rotated(tuple(variants), r):
            trainer, task, _ = opened[name]
            total, in_log = logged_steps(trainer, task, steps)
            times[name].append(total)
            log_times[name].append(in_log)
    for trainer, _, trackers in opened.values():
        if trackers is not None:
            trackers.close({"status": "completed", "error": None, "totals": {"steps": trainer.position.step}})
    missing = [n for n in REQUIREMENTS if n not in installed]
    return {"model": model, "steps": steps, "rounds": rounds, "times": times, "log_times": log_times,
            "not_installed": missing}


def logged_steps(trainer: Trainer, task, n: int) -> tuple[float, float]:
    """`n` train steps, each followed by its metrics.jsonl train line (and so by the trackers' queue put);
    returns (seconds in all, seconds of the train lines alone: what the trackers add to the step's own path)."""
    pos = trainer.position
    started, in_log = time.perf_counter(), 0.0
    for _ in range(n):
        loss, _, _ = trainer.train_step(task)
        pos.step, pos.task_step = pos.step + 1, pos.task_step + 1
        logged = time.perf_counter()
        trainer._log_train(loss, 0.0)
        in_log += time.perf_counter() - logged
    return time.perf_counter() - started, in_log
