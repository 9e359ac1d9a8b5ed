"""Trainer throughput against a plain PyTorch loop, Reptile overhead and data-wait share.

    python benchmarks/bench_trainer.py                          # cpu-2m and cpu-8m, about 3 min on 2 quiet cores
    python benchmarks/bench_trainer.py --models cpu-2m --rounds 40 --fit-rounds 3
    python benchmarks/bench_trainer.py --parts step reptile      # skip the fit() and data-wait parts
    python benchmarks/bench_trainer.py --models cpu-2m --parts trackers   # experiment trackers' overhead

Parts (`--parts`), each measured in this one process with interleaved rounds: a round runs every
variant once for `--steps` steps (default 1, so the two variants alternate step by step and a change
of load on shared cores hits both alike), the order alternating from round to round; tables give
the median over rounds and the min-max spread. All on the real default data (`prepare_data` of the default five Bibles, cached in
`--data-dir`) and the model presets at `--batch` sequences per step:

step     tokens/s of `Trainer.train_step` (alpha=0, k=0: the trainer's per-step path, no eval/log/
         checkpoint) against a minimal PyTorch loop: the same `build_model` model and seed, the same
         AdamW from `build_optimizer`, the same blocks of the same shard read with numpy, cross-entropy,
         clip, step, zero_grad, nothing else. Ratio trainer/plain, target >= 0.95.
fit      a short `Trainer.fit()` (alpha=0, k=0) with the default config's intervals (eval every 100
         steps, log every 25, checkpoint every 500, plus the initial and task-boundary evaluations and
         the boundary checkpoint) and the default budget of 200,000 new tokens per task, against the
         plain loop doing the same number of steps. With 1 task (default `--fit-tasks`) a run has the
         same eval/checkpoint rate per step as the full default 5-task run. Ratio reported apart.
alignment  the same short fit() (default intervals: eval every 100 steps) with eval.grad_alignment off and on, over
         `--alignment-tasks` tasks of the default budget (default 5: the default run's evaluations, whose
         alignment grows from 1 gradient at task 1 to 5 at task 5), in interleaved rounds: steps/s of each
         and the overhead; plus one alignment measurement at the last task alone (all its gradients), in s.
reptile  one `Reptile.maybe_step` interpolation (k=500, eps=0.1, anchor on cpu) on the step trainer's
         model, in ms, as a share of k x the median trainer step time, for k=500 and k=100
         (target <= 1% at k=500). Measured inside the `step` rounds.
wait     the share of step time the trainer spends getting its batch (`trainer.data_wait_s`,
         accumulated in train_step: new blocks + replay sample + tensor conversion) at alpha=0.5,
         with buffer.prefetch off and on (target <= 2%). The buffer is pre-filled with every block of
         the first two tasks and training runs on task 3, so replay reads come from three shards as in
         the middle of a real run. The alpha=0 trainer of `step` gives the new-data-only baseline.
trackers steps/s of train_step + a metrics.jsonl train line after EVERY step (log_every=1, 25x the
         default rate) with metrics.jsonl only, against the same with each installed experiment tracker
         (TensorBoard, MLflow on SQLite in the scratch folder, W&B offline) fed by `mer.trackers`' background
         thread, which shares the cores with training. Ratio tracker/jsonl, target >= 0.98. Not in the
         default parts (needs the optional extras).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from machine import format_machine, machine_info
from rounds import log, med, rotated, spread, verdict

from mer.config.run_config import EvalConfig, RunConfig
from mer.data.config import DataConfig
from mer.data.pipeline import prepare_data
from mer.data.stream import TaskSequence
from mer.model.llama import build_model, get_preset
from mer.optim.reptile import Reptile, ReptileConfig
from mer.optim.schedule import OptimConfig, build_optimizer
from mer.replay.buffer import BufferConfig
from mer.training.trainer import Trainer

DEFAULT_ROUNDS = {"cpu-0.5m": 30, "cpu-2m": 20, "cpu-8m": 6}  # rounds of the step/wait parts (~15-40 s each)
DEFAULT_BUDGET_TOKENS = DataConfig().budget_tokens  # the default new tokens per task


# ------------------------------------------------------------------------------------------ setup
def run_config(model: str, batch: int, alpha: float, k: int, prefetch: bool, data_dir: str, runs_dir: str,
               seq_len: int | None) -> RunConfig:
    """The default config (conf/config.yaml + groups) built by hand, with the given knobs."""
    model_cfg = get_preset(model) if seq_len is None else get_preset(model, seq_len=seq_len)
    return RunConfig(
        alpha=alpha, k=k, eps=0.1, seed=0, model=model_cfg,
        data=DataConfig(data_dir=data_dir),
        optim=OptimConfig(lr=3e-3, min_lr=3e-4, batch_size=batch),  # conf/optim/default.yaml
        eval=EvalConfig(),  # conf/eval/default.yaml: every 100 steps, each task's whole validation split
        buffer=BufferConfig(policy="all", storage="reference", prefetch=prefetch),
        runs_dir=runs_dir, checkpoint_every=500, log_every=25, device="cpu",
    )


def task_sequence(cfg: RunConfig, prepared, n_tasks: int | None = None, budget_steps: int | None = None,
                  allow_repeat: bool = False) -> TaskSequence:
    """As `mer.launch.runner.run_training` builds it (optionally the first `n_tasks` tasks only)."""
    shards = prepared.shards[:n_tasks]
    budgets = [DEFAULT_BUDGET_TOKENS] * len(shards)
    return TaskSequence(shards, cfg.model.seq_len, cfg.n_new_per_step, cfg.seed, budgets, budget_steps,
                        allow_repeat, cfg.data.eval_tokens, replay_blocks_per_step=cfg.n_replay_per_step,
                        replay_current_task=cfg.buffer.replay_current_task)


def make_trainer(cfg: RunConfig, sequence: TaskSequence, vocab: int, scratch: Path, name: str) -> Trainer:
    run_dir = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=scratch))
    return Trainer(cfg, sequence, vocab, run_dir)


class PlainLoop:
    """The minimal PyTorch loop: same model/seed, same AdamW, same blocks of the same shards, nothing else."""

    def __init__(self, cfg: RunConfig, shards: list, vocab: int) -> None:
        torch.manual_seed(cfg.seed)
        self.model = build_model(cfg.model, vocab)
        self.model.train()
        self.optimizer = build_optimizer(self.model, cfg.optim)
        self.T, self.B, self.clip = cfg.model.seq_len, cfg.optim.batch_size, cfg.optim.grad_clip
        self.tokens = [s.tokens("train") for s in shards]
        # A seeded random order of each task's blocks: random reads like the TaskStream's (its order is another
        # permutation, which changes nothing for speed).
        n_blocks = [(len(t) - 1) // self.T for t in self.tokens]
        self.order = [np.random.default_rng([cfg.seed, i, 0]).permutation(n) for i, n in enumerate(n_blocks)]
        self.position = [0] * len(shards)
        self.arange = np.arange(self.T + 1)

    def step(self, task: int = 0) -> None:
        order, p = self.order[task], self.position[task]
        ids = order[np.arange(p, p + self.B) % len(order)]
        self.position[task] = p + self.B
        blocks = self.tokens[task][ids[:, None] * self.T + self.arange]  # [B, T+1]
        batch = torch.from_numpy(blocks.astype(np.int64))  # [B, T+1]
        logits = self.model(input_ids=batch[:, :-1]).logits  # [B, T, V]
        loss = F.cross_entropy(logits.float().flatten(0, 1), batch[:, 1:].flatten())
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def run(self, n: int, task: int = 0) -> float:
        started = time.perf_counter()
        for _ in range(n):
            self.step(task)
        return time.perf_counter() - started


def trainer_steps(trainer: Trainer, task, n: int) -> float:
    """`n` calls of train_step (the per-step path of fit(), without its eval/log/checkpoint)."""
    pos = trainer.position
    started = time.perf_counter()
    for _ in range(n):
        trainer.train_step(task)
        pos.step, pos.task_step = pos.step + 1, pos.task_step + 1
    return time.perf_counter() - started


def timed(fn, *args) -> tuple[float, float]:
    """(wall seconds, process CPU seconds of all threads) of `fn(*args)`."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn(*args)
    return time.perf_counter() - wall, time.process_time() - cpu


def time_reptile(reptile: Reptile, reps: int) -> list[float]:
    """Seconds of `reps` forced interpolations (maybe_step exactly k steps after the anchor)."""
    times = []
    for _ in range(reps):
        step = reptile.anchor_step + reptile.cfg.k
        started = time.perf_counter()
        assert reptile.maybe_step(step)
        times.append(time.perf_counter() - started)
    return times


# ------------------------------------------------------------------------------------------ parts
@dataclass
class Ctx:
    args: argparse.Namespace
    prepared: object
    scratch: Path

    @property
    def vocab(self) -> int:
        return len(self.prepared.tokenizer)

    def cfg(self, model: str, alpha: float = 0.0, k: int = 0, prefetch: bool = False) -> RunConfig:
        return run_config(model, self.args.batch, alpha, k, prefetch, self.args.data_dir, str(self.scratch),
                          self.args.seq_len)


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


# ------------------------------------------------------------------------------------------ tables
def table_step(results: list[dict]) -> str:
    lines = ["| model | params | seq_len x batch | rounds x steps | trainer tok/s | plain tok/s | trainer ms/step "
             "| plain ms/step | ratio trainer/plain (wall) | ratio (CPU time) | target >= 0.95 |",
             "| --- | ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for r in results:
        tok = r["tokens_per_round"]
        ratios = [p / t for t, p in zip(r["trainer"], r["plain"])]
        cpu_ratios = [p / t for t, p in zip(r["trainer_cpu"], r["plain_cpu"])]
        lines.append(
            f"| {r['model']} | {r['n_params'] / 1e6:.2f}M | {r['seq_len']} x {r['batch']} | {r['rounds']} x {r['steps']} "
            f"| {spread([tok / t for t in r['trainer']], '{:,.0f}')} | {spread([tok / t for t in r['plain']], '{:,.0f}')} "
            f"| {med(r['trainer']) / r['steps'] * 1e3:.0f} | {med(r['plain']) / r['steps'] * 1e3:.0f} "
            f"| {spread(ratios, '{:.3f}')} | {med(cpu_ratios):.3f} | {verdict(med(ratios), 0.95, True, '{:.3f}')} |")
    return "\n".join(lines)


def table_fit(results: list[dict], steps: list[dict]) -> str:
    lines = ["| model | tasks x steps | evals + checkpoints | fit tok/s | plain tok/s | ratio fit/plain "
             "| fit - plain (s) | one eval (s) | one checkpoint (s) | ratio from parts | target >= 0.95 |",
             "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    per_step = {r["model"]: r for r in steps}
    for r in results:
        tok = r["tokens"]
        ratios = [p / f for f, p in zip(r["fit"], r["plain"])]
        over = [f - p for f, p in zip(r["fit"], r["plain"])]
        # The same run rebuilt from robust parts: steps at the interleaved per-step times + evals + checkpoints.
        parts = "n/a"
        if r["model"] in per_step:
            s = per_step[r["model"]]
            t_tr, t_pl = med(s["trainer"]) / s["steps"], med(s["plain"]) / s["steps"]
            fit_est = r["steps"] * t_tr + r["evals"] * med(r["eval"]) + r["saves"] * med(r["save"])
            parts = f"{r['steps'] * t_pl / fit_est:.3f}"
        lines.append(
            f"| {r['model']} | {r['tasks']} x {r['steps_per_task'][0]} | {r['evals']} + {r['saves']} "
            f"| {spread([tok / t for t in r['fit']], '{:,.0f}')} | {spread([tok / t for t in r['plain']], '{:,.0f}')} "
            f"| {spread(ratios, '{:.3f}')} | {spread(over, '{:.2f}')} | {med(r['eval']):.2f} | {med(r['save']):.3f} "
            f"| {parts} | {verdict(med(ratios), 0.95, True, '{:.3f}')} |")
    return "\n".join(lines)


def table_reptile(results: list[dict]) -> str:
    lines = ["| model | params | interpolation ms | trainer ms/step | share at k=500 | share at k=100 "
             "| target <= 1% at k=500 |",
             "| --- | ---: | ---: | ---: | ---: | ---: | --- |"]
    for r in results:
        if not r["reptile"]:
            continue
        t_int, t_step = med(r["reptile"]), med(r["trainer"]) / r["steps"]
        share500, share100 = t_int / (500 * t_step), t_int / (100 * t_step)
        lines.append(f"| {r['model']} | {r['n_params'] / 1e6:.2f}M | {spread([x * 1e3 for x in r['reptile']], '{:.2f}')} "
                     f"| {t_step * 1e3:.0f} | {share500:.4%} | {share100:.4%} "
                     f"| {verdict(share500, 0.01, False, '{:.2%}')} |")
    return "\n".join(lines)


def table_wait(waits: list[dict], steps: list[dict]) -> str:
    lines = ["| model | alpha | new + replay per step | buffer.prefetch | data wait ms/step | step ms | wait share "
             "| target <= 2% |",
             "| --- | ---: | --- | --- | ---: | ---: | ---: | --- |"]
    for r in steps:  # alpha=0 baseline from the step part
        shares = [w / t for w, t in zip(r["data_wait"], r["trainer"])]
        lines.append(f"| {r['model']} | 0 | {r['batch']} + 0 | (no replay) | {med(r['data_wait']) / r['steps'] * 1e3:.2f} "
                     f"| {med(r['trainer']) / r['steps'] * 1e3:.0f} | {spread(shares, '{:.3%}')} "
                     f"| {verdict(med(shares), 0.02, False, '{:.2%}')} |")
    for r in waits:
        for prefetch in ("False", "True"):
            w, t = r["t_wait"][prefetch], r["t_step"][prefetch]
            shares = [a / b for a, b in zip(w, t)]
            lines.append(f"| {r['model']} | {r['alpha']} | {r['n_new']} + {r['n_replay']} | {prefetch.lower()} "
                         f"| {med(w) / r['steps'] * 1e3:.2f} | {med(t) / r['steps'] * 1e3:.0f} | {spread(shares, '{:.3%}')} "
                         f"| {verdict(med(shares), 0.02, False, '{:.2%}')} |")
    return "\n".join(lines)


def table_trackers(results: list[dict]) -> str:
    lines = ["| model | tracker | rounds x steps | steps/s | ms/step | train line ms (in the step) "
             "| ratio tracker/jsonl | target >= 0.98 |",
             "| --- | --- | --- | ---: | ---: | ---: | ---: | --- |"]
    for r in results:
        base = r["times"]["jsonl"]
        for name, times in r["times"].items():
            ratios = [b / t for b, t in zip(base, times)]
            lines.append(f"| {r['model']} | {'metrics.jsonl only' if name == 'jsonl' else name} "
                         f"| {r['rounds']} x {r['steps']} | {spread([r['steps'] / t for t in times], '{:.2f}')} "
                         f"| {med(times) / r['steps'] * 1e3:.0f} "
                         f"| {spread([t / r['steps'] * 1e3 for t in r['log_times'][name]], '{:.3f}')} "
                         f"| {spread(ratios, '{:.3f}')} "
                         f"| {'(baseline)' if name == 'jsonl' else verdict(med(ratios), 0.98, True, '{:.3f}')} |")
        for name in r["not_installed"]:
            lines.append(f"| {r['model']} | {name} | not installed (pip install -e \".[{name}]\") | | | | | |")


def table_alignment(results: list[dict]) -> str:
    lines = ["| model | tasks | steps | evals | windows per task | steps/s off | steps/s on | overhead (on/off - 1) "
             "| one measurement at the last task (s) |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in results:
        overhead = [on / off - 1 for on, off in zip(r["on"], r["off"])]
        lines.append(f"| {r['model']} | {r['tasks']} | {r['steps']} | {r['evals']} | {r.get('windows', 'n/a')} "
                     f"| {spread([r['steps'] / t for t in r['off']], '{:.2f}')} "
                     f"| {spread([r['steps'] / t for t in r['on']], '{:.2f}')} | {spread(overhead, '{:.1%}')} "
                     f"| {med(r['measure']):.2f} |")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------ main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--models", nargs="+", default=["cpu-2m", "cpu-8m"], help="model presets")
    parser.add_argument("--batch", type=int, default=32, help="sequences per optimizer step")
    parser.add_argument("--seq-len", type=int, default=None, help="override the presets' seq_len")
    parser.add_argument("--steps", type=int, default=1,
                        help="steps per round and variant in the step/wait parts (1: A and B alternate every step)")
    parser.add_argument("--rounds", type=int, default=None,
                        help=f"interleaved rounds of the step and wait parts (default per model: {DEFAULT_ROUNDS})")
    parser.add_argument("--fit-rounds", type=int, default=2, help="interleaved rounds of the fit part")
    parser.add_argument("--fit-tasks", type=int, default=1, help="tasks in the fit part (default budget each)")
    parser.add_argument("--fit-models", nargs="+", default=None, help="models of the fit part (default: the first)")
    parser.add_argument("--reptile-reps", type=int, default=5, help="interpolations timed per round")
    parser.add_argument("--alpha", type=float, default=0.5, help="replay ratio of the wait part")
    parser.add_argument("--parts", nargs="+", default=["step", "fit", "reptile", "wait"],
                        choices=["step", "fit", "reptile", "wait", "trackers", "alignment"])
    parser.add_argument("--alignment-tasks", type=int, default=5, help="tasks in the alignment part")
    parser.add_argument("--alignment-rounds", type=int, default=2, help="interleaved rounds of the alignment part")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's default)")
    parser.add_argument("--data-dir", default=os.environ.get("MER_DATA_DIR", "~/.cache/mer"),
                        help="data cache (prepared once if missing; default $MER_DATA_DIR or ~/.cache/mer)")
    parser.add_argument("--json", type=Path, help="also write all raw timings to this JSON file")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    info = machine_info()
    log(f"preparing / loading the default data in {args.data_dir} ...")
    prepared = prepare_data(DataConfig(data_dir=args.data_dir))
    scratch = Path(tempfile.mkdtemp(prefix="mer-bench-trainer-"))
    ctx = Ctx(args, prepared, scratch)
    steps_results, fit_results, wait_results, tracker_results, alignment_results = [], [], [], [], []
    try:
        for model in args.models:
            steps, rounds = args.steps, args.rounds or DEFAULT_ROUNDS.get(model, 6)
            if "step" in args.parts or "reptile" in args.parts:
                steps_results.append(bench_step(ctx, model, steps, rounds, args.reptile_reps,
                                                "reptile" in args.parts))
            if "fit" in args.parts and model in (args.fit_models or args.models[:1]):
                fit_results.append(bench_fit(ctx, model, args.fit_rounds, args.fit_tasks))
            if "wait" in args.parts:
                wait_results.append(bench_wait(ctx, model, steps, rounds, args.alpha))
            if "trackers" in args.parts:
                tracker_results.append(bench_trackers(ctx, model, steps, rounds))
            if "alignment" in args.parts and model in (args.fit_models or args.models[:1]):
                alignment_results.append(bench_alignment(ctx, model, args.alignment_rounds, args.alignment_tasks))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    info["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]

    shown = " ".join(sys.argv[1:] if argv is None else argv)
    print(f"## Trainer benchmarks (python benchmarks/bench_trainer.py {shown})\n".replace(" )", ")"))
    print(format_machine(info) + "\n")
    if "step" in args.parts:
        print("### Per-step throughput: Trainer.train_step vs a plain PyTorch loop (alpha=0, k=0), "
              "median (min-max) over interleaved rounds\n")
        print(table_step(steps_results) + "\n")
    if fit_results:
        print("### Short fit() with the default intervals (eval every 100, log every 25, checkpoint every 500, "
              "initial + boundary evals, boundary checkpoint) vs the plain loop, same steps\n")
        print(table_fit(fit_results, steps_results) + "\n")
    if "reptile" in args.parts:
        print("### Reptile interpolation (eps=0.1, anchor on cpu) as a share of k steps\n")
        print(table_reptile(steps_results) + "\n")
    if wait_results:
        print("### Data wait share of step time (buffer holds tasks 1-2 entirely, training on task 3)\n")
        print(table_wait(wait_results, steps_results if "step" in args.parts else []) + "\n")
    if tracker_results:
        print("### Experiment trackers: train_step + a metrics.jsonl train line every step, metrics.jsonl only vs "
              "each tracker (its background thread on the same cores), median (min-max) over interleaved rounds\n")
        print(table_trackers(tracker_results) + "\n")
    if alignment_results:
        print("### eval.grad_alignment: short fit() with the default intervals, alignment off vs on, "
              "median (min-max) over interleaved rounds\n")
        print(table_alignment(alignment_results) + "\n")
    if args.json:
        args.json.write_text(json.dumps({"machine": info, "step": steps_results, "fit": fit_results,
                                         "wait": wait_results, "trackers": tracker_results, "alignment": alignment_results, "args": {k: str(v) for k, v in vars(args).items()}},
                                        indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
