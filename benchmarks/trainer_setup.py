"""What bench_trainer.py's parts are built from: the default config with the benchmark's knobs, the
task sequence and trainer as a run builds them, the plain PyTorch loop the trainer is compared with,
and the timers (trainer steps, wall and CPU time, Reptile interpolations)."""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from mer.config.run_config import EvalConfig, RunConfig
from mer.data.config import DataConfig
from mer.data.stream import TaskSequence
from mer.model.llama import build_model, get_preset
from mer.optim.reptile import Reptile
from mer.optim.schedule import OptimConfig, build_optimizer
from mer.replay.buffer import BufferConfig
from mer.training.trainer import Trainer


def _default_run() -> RunConfig:
    """The config `python -m mer.run` composes with no overrides (conf/config.yaml and its groups)."""
    from hydra import compose, initialize_config_module

    import mer.run  # noqa: F401  (registers the configs, as the command does)
    from mer.config.run_config import to_dataclass

    with initialize_config_module(config_module="mer.conf", version_base="1.3"):
        return to_dataclass(compose("config"), RunConfig)


DEFAULT_RUN = _default_run()
DEFAULT_BUDGET_TOKENS = DEFAULT_RUN.data.budget_tokens  # the default run's new tokens per task


def run_config(model: str, batch: int, alpha: float, k: int, prefetch: bool, data_dir: str, runs_dir: str,
               seq_len: int | None) -> RunConfig:
    """The default run's config with the given knobs: its held-out span, evaluation, log and checkpoint intervals
    as composed from conf/ (so the benchmark follows the default), the model and batch chosen here."""
    model_cfg = get_preset(model) if seq_len is None else get_preset(model, seq_len=seq_len)
    return RunConfig(
        alpha=alpha, k=k, eps=0.1, seed=0, model=model_cfg,
        data=DataConfig(data_dir=data_dir, eval_tokens=DEFAULT_RUN.data.eval_tokens),
        optim=OptimConfig(lr=3e-3, min_lr=3e-4, batch_size=batch),  # conf/optim/default.yaml
        eval=EvalConfig(**{f: getattr(DEFAULT_RUN.eval, f) for f in ("every", "batch_size", "context", "stride")}),
        buffer=BufferConfig(policy="all", storage="reference", prefetch=prefetch),
        runs_dir=runs_dir, checkpoint_every=DEFAULT_RUN.checkpoint_every, log_every=DEFAULT_RUN.log_every,
        device="cpu",
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
