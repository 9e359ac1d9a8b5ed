"""The two kinds of training loop bench_gpu.py times: nanoGPT's plain loop over the model, and
`Trainer.train_step` as fit() calls it. Both keep `data_wait_s`, the host time spent getting batches."""

from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F
from gpu_setup import REPLAY_TASK, Bench, enable_checkpointing

from mer.config.run_config import RunConfig
from mer.model.llama import build_model
from mer.optim.schedule import build_optimizer
from mer.training.trainer import Trainer


class PlainLoop:
    """The minimal loop: numpy block reads, autocast forward, cross-entropy, backward, clip, step, zero_grad."""

    def __init__(self, bench: Bench, cfg: RunConfig, tokens: np.ndarray, model: torch.nn.Module,
                 train_model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> None:
        self.bench, self.model, self.train_model, self.optimizer = bench, model, train_model, optimizer
        self.T, self.B, self.clip = cfg.model.seq_len, cfg.optim.batch_size, cfg.optim.grad_clip
        self.accum = cfg.optim.grad_accum
        self.tokens = tokens
        self.n_blocks = (len(tokens) - 1) // self.T
        self.arange = np.arange(self.T + 1)
        self.rng = np.random.default_rng(cfg.seed)
        self.data_wait_s = 0.0

    @classmethod
    def own(cls, bench: Bench, cfg: RunConfig, tokens: np.ndarray, vocab: int) -> PlainLoop:
        """A plain loop with its own model and optimizer, built with the trainer's calls and seed."""
        torch.manual_seed(cfg.seed)
        model = build_model(cfg.model, vocab).to(bench.device)
        if cfg.activation_checkpointing:
            enable_checkpointing(model)
        model.train()
        train_model = torch.compile(model) if cfg.compile else model
        return cls(bench, cfg, tokens, model, train_model, build_optimizer(model, cfg.optim))

    def run(self, n: int) -> None:
        for _ in range(n):
            started = time.perf_counter()
            ids = self.rng.integers(0, self.n_blocks, size=self.B)  # [B]
            blocks = self.tokens[ids[:, None] * self.T + self.arange]  # [B, T+1]
            batch = torch.from_numpy(blocks.astype(np.int64))  # [B, T+1]
            if self.bench.cuda:
                batch = batch.pin_memory().to(self.bench.device, non_blocking=True)
            self.data_wait_s += time.perf_counter() - started
            for micro in batch.chunk(self.accum):  # [B/accum, T+1] each
                with self.bench.autocast():
                    logits = self.train_model(input_ids=micro[:, :-1]).logits  # [b, T, V]
                    loss = F.cross_entropy(logits.float().flatten(0, 1), micro[:, 1:].flatten())
                (loss / self.accum).backward()
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.clip)
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)


class TrainerLoop:
    """`n` calls of `Trainer.train_step` on task 3, advancing the position as fit() does."""

    def __init__(self, trainer: Trainer) -> None:
        self.trainer, self.task = trainer, trainer.sequence.tasks[REPLAY_TASK]

    @property
    def data_wait_s(self) -> float:
        return self.trainer.data_wait_s

    def run(self, n: int) -> None:
        pos = self.trainer.position
        for _ in range(n):
            self.trainer.train_step(self.task)
            pos.step, pos.task_step = pos.step + 1, pos.task_step + 1
