"""The trainer: the only place that knows the order of an optimizer step.

One step (DESIGN.md): draw round((1-alpha)*B) new blocks and the rest from the replay buffer ->
forward/backward (micro-batches) -> clip -> AdamW with the scheduled LR -> add the new blocks to the
buffer -> every k steps a Reptile interpolation -> count FLOPs -> evaluate / log / checkpoint.
Resume is the default path: `fit()` first loads the run directory's checkpoint if there is one.
"""

from __future__ import annotations

import logging
import math
import random
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from mer.checkpoint import find_checkpoint, load_checkpoint, save_checkpoint
from mer.config import RunConfig
from mer.data.stream import TaskSequence
from mer.flops import FlopCounter, estimate_flops
from mer.model import build_model, count_parameters
from mer.progress import Progress
from mer.replay import ReplayBuffer
from mer.reptile import Reptile, ReptileConfig
from mer.run_dir import MetricsLog
from mer.schedule import build_optimizer, lr_at

log = logging.getLogger(__name__)


class TrainingStopped(Exception):
    """Training stopped early with a checkpoint in place (a signal) or without a new one (NaN loss)."""


@dataclass
class Position:
    """Where training is: global optimizer steps, the current task and steps done inside it."""

    step: int = 0
    task_index: int = 0
    task_step: int = 0
    wall_time: float = 0.0
    evals_done: list[int] = field(default_factory=list)

    def state_dict(self) -> dict:
        return {"step": self.step, "task_index": self.task_index, "task_step": self.task_step,
                "wall_time": self.wall_time}

    def load_state_dict(self, state: dict) -> None:
        self.step, self.task_index = int(state["step"]), int(state["task_index"])
        self.task_step, self.wall_time = int(state["task_step"]), float(state["wall_time"])


def _rng_state() -> dict:
    return {"torch": torch.get_rng_state(), "python": list(random.getstate()[1]),
            "python_version": random.getstate()[0], "python_gauss": random.getstate()[2]}


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate((state["python_version"], tuple(state["python"]), state["python_gauss"]))


class Trainer:
    def __init__(self, cfg: RunConfig, sequence: TaskSequence, vocab_size: int, run_dir: Path) -> None:
        self.cfg, self.sequence, self.run_dir = cfg, sequence, run_dir
        self.device = torch.device(cfg.device if cfg.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu"))
        torch.manual_seed(cfg.seed)
        random.seed(cfg.seed)
        self.model = build_model(cfg.model, vocab_size).to(self.device)
        self.n_params, self.n_params_nonembedding = count_parameters(self.model)
        self.optimizer = build_optimizer(self.model, cfg.optim)
        self.reptile = Reptile(ReptileConfig(k=cfg.k, eps=cfg.eps, anchor_device=cfg.reptile_anchor_device),
                               self.model.parameters())
        self.buffer = ReplayBuffer(cfg.buffer, sequence, seed=cfg.seed, storage_dir=run_dir / "buffer")
        self.rates = estimate_flops(self.n_params, self.n_params_nonembedding, cfg.model.n_layer, cfg.model.seq_len,
                                    cfg.model.d_model, vocab_size)
        self.flops = FlopCounter(self.rates)
        self.position = Position()
        self.metrics = MetricsLog(run_dir / "metrics.jsonl")
        self.task_steps = [t.steps for t in sequence.tasks]
        self._stop_signal: int | None = None
        self.data_wait_s = 0.0  # time spent getting batches (new + replay) since this process started

    # ---------------------------------------------------------------- state
    def state_dict(self) -> dict:
        return {
            "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            "reptile": self.reptile.state_dict(), "buffer": self.buffer.state_dict(),
            "data": self.sequence.state_dict(), "flops": self.flops.state_dict(),
            "position": self.position.state_dict(), "rng": _rng_state(), "metrics_bytes": self.metrics.size(),
        }

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.reptile.load_state_dict(state["reptile"])
        self.buffer.load_state_dict(state["buffer"])
        self.sequence.load_state_dict(state["data"])
        self.flops.load_state_dict(state["flops"])
        self.position.load_state_dict(state["position"])
        _set_rng_state(state["rng"])
        self.metrics.truncate(int(state["metrics_bytes"]))

    def save(self) -> None:
        save_checkpoint(self.run_dir, self.state_dict())

    # ---------------------------------------------------------------- loop
    def fit(self) -> None:
        """Train over all tasks from wherever the checkpoint left off."""
        checkpoint = find_checkpoint(self.run_dir)
        if checkpoint is not None:
            self.load_state_dict(load_checkpoint(checkpoint))
            log.info("resumed from %s at step %d", checkpoint.parent.name, self.position.step)
        else:
            self.reptile.reset_anchor(0)
            self.evaluate(boundary=False)
        self._install_signal_handlers()
        pos, cfg = self.position, self.cfg
        progress = Progress(self.sequence.total_steps, pos.step, self.sequence.names)
        started = time.perf_counter() - pos.wall_time
        try:
            while pos.task_index < len(self.sequence.tasks):
                task = self.sequence.tasks[pos.task_index]
                if pos.task_step == 0 and pos.task_index > 0 and cfg.reptile_reset_each_task:
                    self.reptile.reset_anchor(pos.step)
                while pos.task_step < task.steps:
                    loss, n_new, n_replay = self.train_step(task)
                    pos.step, pos.task_step = pos.step + 1, pos.task_step + 1
                    if self.reptile.maybe_step(pos.step):
                        self.flops.add_reptile_step()
                    pos.wall_time = time.perf_counter() - started
                    progress.update(pos.step, task.name, loss, self.flops.tokens_new + self.flops.tokens_replay)
                    if pos.step % cfg.log_every == 0:
                        self._log_train(loss, progress.tokens_per_s())
                    if pos.step % cfg.eval.every == 0 and pos.task_step < task.steps:
                        self.evaluate(boundary=False)
                    if self._stop_signal is not None:
                        self.save()
                        raise TrainingStopped(f"stopped by signal {self._stop_signal} at step {pos.step}; "
                                              "checkpoint saved, run the same command again to resume")
                    if pos.step % cfg.checkpoint_every == 0:
                        self.save()
                self.evaluate(boundary=True)
                pos.task_index, pos.task_step = pos.task_index + 1, 0
                self.save()
        finally:
            progress.close()

    def train_step(self, task) -> tuple[float, int, int]:
        """One optimizer step on `round((1-alpha)*B)` new blocks plus replayed ones; returns the mean loss."""
        cfg, index = self.cfg, self.position.task_index
        step_started = time.perf_counter()
        new_ids, new_tokens = task.stream.next_blocks(cfg.n_new_per_step)
        _, replay_tokens = self.buffer.sample(cfg.n_replay_per_step, index)
        if len(replay_tokens) < cfg.n_replay_per_step:  # buffer still (almost) empty: fill with new data
            extra_ids, extra_tokens = task.stream.next_blocks(cfg.n_replay_per_step - len(replay_tokens))
            new_ids, new_tokens = np.concatenate([new_ids, extra_ids]), np.concatenate([new_tokens, extra_tokens])
        blocks = np.concatenate([new_tokens, replay_tokens]) if len(replay_tokens) else new_tokens  # [B, T+1]
        batch = torch.from_numpy(blocks.astype(np.int64)).to(self.device, non_blocking=True)  # [B, T+1]
        self.data_wait_s += time.perf_counter() - step_started

        lr = lr_at(self.position.step, self.task_steps, cfg.optim)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        total_loss = 0.0
        for micro in batch.chunk(cfg.optim.grad_accum):  # [b, T+1] each
            logits = self.model(input_ids=micro[:, :-1]).logits  # [b, T, V]
            loss = F.cross_entropy(logits.float().flatten(0, 1), micro[:, 1:].flatten())
            (loss / cfg.optim.grad_accum).backward()
            total_loss += loss.item() / cfg.optim.grad_accum
        if not math.isfinite(total_loss):
            raise TrainingStopped(f"the loss is {total_loss} at step {self.position.step + 1}; stopped without "
                                  "saving, the last good checkpoint is intact; lower optim.lr or check the data")
        if cfg.optim.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.optim.grad_clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

        self.buffer.add(index, new_ids)
        if cfg.buffer.prefetch and cfg.n_replay_per_step:  # read the next step's replay rows in the background
            self.buffer.prefetch(cfg.n_replay_per_step, index)
        seq_len = cfg.model.seq_len
        n_new, n_replay = len(new_ids), len(replay_tokens)
        self.flops.add_train_step(n_new * seq_len, n_replay * seq_len)
        self._last_lr = lr
        return total_loss, n_new, n_replay

    @torch.no_grad()
    def evaluate(self, boundary: bool) -> dict[str, float]:
        """Mean token loss on the fixed held-out blocks of every task; appended to metrics.jsonl."""
        self.model.eval()
        losses = {}
        for task in self.sequence.tasks:
            total, count = 0.0, 0
            for start in range(0, len(task.eval_tokens), self.cfg.eval.batch_size):
                blocks = task.eval_tokens[start:start + self.cfg.eval.batch_size]
                batch = torch.from_numpy(blocks.astype(np.int64)).to(self.device)  # [b, T+1]
                logits = self.model(input_ids=batch[:, :-1]).logits  # [b, T, V]
                loss = F.cross_entropy(logits.float().flatten(0, 1), batch[:, 1:].flatten(), reduction="sum")
                total += loss.item()
                count += batch[:, 1:].numel()
            self.flops.add_eval(count)
            losses[task.name] = total / count
        self.model.train()
        self.metrics.append({**self._record("eval"), "val_loss": losses, "boundary": boundary})
        return losses

    # ---------------------------------------------------------------- helpers
    def _record(self, event: str) -> dict:
        pos = self.position
        return {"event": event, "step": pos.step, "task": self.sequence.names[pos.task_index],
                "task_index": pos.task_index, **self.flops.as_dict(),
                "lr": getattr(self, "_last_lr", 0.0), "wall_time": round(pos.wall_time, 3)}

    def _log_train(self, loss: float, tokens_per_s: float) -> None:
        self.metrics.append({**self._record("train"), "loss": loss, "tokens_per_s": tokens_per_s,
                             "data_wait_s": round(self.data_wait_s, 4)})

    def _install_signal_handlers(self) -> None:
        # Slurm sends SIGUSR1 (with --signal) or SIGTERM before preemption / the time limit: finish the
        # current step, checkpoint, stop. Only possible from the main thread.
        def handler(signum, frame):
            self._stop_signal = signum

        if sys.platform != "win32":
            try:
                signal.signal(signal.SIGTERM, handler)
                signal.signal(signal.SIGUSR1, handler)
            except ValueError:
                log.warning("not in the main thread: SIGTERM/SIGUSR1 will not checkpoint")
