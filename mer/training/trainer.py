"""The trainer: the only place that knows the order of an optimizer step.

One step (docs/design.md): draw round((1-alpha)*B) new blocks and the rest from the replay buffer ->
forward/backward (micro-batches) -> clip -> AdamW with the scheduled LR -> add the new blocks to the
buffer -> every k steps a Reptile interpolation -> count FLOPs -> evaluate / log / checkpoint.
Resume is the default path: `fit()` first loads the run directory's checkpoint if there is one.

Data parallelism (W processes, `mer.parallel.distributed`): every rank builds the same GLOBAL plan of the
step's B rows (block ids only): the new ids from the shared stream position, then the replayed ones
from the replay sampler, which is seeded identically on every rank and fed the same global block ids,
so all buffers hold the same blocks and draw the same rows. Rank r then reads and trains rows
[r*B/W, (r+1)*B/W) of that plan, and DDP averages the gradients: W processes of B/W rows take the
step one process of B rows takes (up to float summation order), whatever alpha is. Weights, optimizer
state and Reptile anchors stay identical on all ranks; rank 0 alone writes the run directory, and its
checkpoint restores every rank.

With `parallel=fsdp` (`mer.parallel.sharding`) the same plan and rows apply, but the model, optimizer state and
Reptile anchor are sharded over the ranks instead of replicated, and every rank writes its shards
into the checkpoint.
"""

from __future__ import annotations

import inspect
import logging
import math
import random
import signal
import sys
import time
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from mer.compute.flops import FlopCounter, estimate_flops
from mer.compute.mfu import device_peak_flops, mfu
from mer.config.run_config import RunConfig
from mer.data.stream import TaskSequence
from mer.evaluation.grad_alignment import build_grad_alignment, check_grad_alignment
from mer.evaluation.windows import plan_windows
from mer.files.fault_points import fault_point
from mer.model.llama import build_model, count_parameters
from mer.model.pretrained import load_pretrained
from mer.optim.reptile import Reptile, ReptileConfig
from mer.optim.schedule import build_optimizer, lr_at
from mer.parallel.distributed import Distributed
from mer.parallel.sharding import SHARDED_DIR, check_parallel, load_sharded, save_sharded, shard_model
from mer.replay.buffer import ReplayBuffer
from mer.rundir.checkpoint import begin_checkpoint, commit_checkpoint, find_checkpoint, load_checkpoint, write_state
from mer.rundir.checkpoint_integrity import write_manifest
from mer.rundir.layout import MetricsLog
from mer.signals import stop_request
from mer.training.progress import Progress

log = logging.getLogger(__name__)


class TrainingStopped(Exception):
    """Training stopped early with a checkpoint in place (a signal) or without a new one (NaN loss)."""


def check_world_size(cfg: RunConfig, world_size: int) -> None:
    """Refuse, before any work, a batch that does not split evenly over the ranks.

    Rank r trains rows [r*B/W, (r+1)*B/W) of the step's global plan [new rows | replayed rows], so
    only B (and each rank's B/W rows over grad_accum micro-batches) must divide; the new/replay
    split may fall inside a rank's rows, which changes nothing since gradients are averaged.
    """
    batch, accum = cfg.optim.batch_size, cfg.optim.grad_accum
    if batch % world_size:
        sizes = [b for b in range(world_size, 4 * world_size + 1, world_size)]
        raise ValueError(f"optim.batch_size={batch} does not split over {world_size} processes: it is the GLOBAL "
                         f"batch (summed over ranks); use a multiple of {world_size}, e.g. {sizes}")
    if (batch // world_size) % accum:
        raise ValueError(f"optim.grad_accum={accum} does not divide the {batch // world_size} sequences each of "
                         f"the {world_size} processes trains per step (optim.batch_size={batch}); "
                         "choose grad_accum dividing batch_size / world size")


@dataclass
class Position:
    """Where training is: global optimizer steps, the current task and steps done inside it."""

    step: int = 0
    task_index: int = 0
    task_step: int = 0
    wall_time: float = 0.0

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
    def __init__(self, cfg: RunConfig, sequence: TaskSequence, vocab_size: int, run_dir: Path,
                 dist: Distributed | None = None, tokenizer_dir: Path | None = None,
                 task_folders: Sequence[Path] = ()) -> None:
        """`tokenizer_dir`: the tokenizer's folder, which exports (export_each_task) copy; `task_folders`: harness
        task folders for eval.downstream (the built-in cloze one, then eval.downstream_include)."""
        self.cfg, self.sequence, self.run_dir = cfg, sequence, run_dir
        self.tokenizer_dir = tokenizer_dir
        if dist is None:  # one process on the configured device
            from mer.parallel.distributed import check_precision, resolve_device

            dist = Distributed(device=resolve_device(cfg.device))
            check_precision(cfg.precision, dist.device)
        check_world_size(cfg, dist.world_size)
        if any(t.stream.world_size != 1 for t in sequence.tasks):
            raise ValueError("the trainer splits the GLOBAL block order over ranks itself: build the TaskSequence "
                             "with rank=0, world_size=1 on every rank")
        self.dist, self.device = dist, dist.device
        # eval.grad_alignment with a sharded model is refused before the model is built (mer.evaluation.grad_alignment).
        check_grad_alignment(cfg, check_parallel(cfg.parallel, self.device, dist.world_size, cfg.fsdp_on_cpu))
        self.downstream = None  # scores the live model at task boundaries (eval.downstream)
        if cfg.eval.downstream:  # first: an unknown task name is refused before the model is even built
            if check_parallel(cfg.parallel, self.device, dist.world_size, cfg.fsdp_on_cpu):
                raise ValueError("eval.downstream scores the model on rank 0 alone, which a sharded model "
                                 "(parallel=fsdp) cannot do: train with export_each_task=true and score the "
                                 "exported models afterwards with `python -m mer.downstream RUN_DIR --tasks ...`")
            from mer.training.downstream_live import LiveDownstream

            self.downstream = LiveDownstream(cfg, run_dir, tokenizer_dir, task_folders)  # checks the task names
        torch.manual_seed(cfg.seed)
        random.seed(cfg.seed)
        # The fp32 module: the optimizer, Reptile, checkpoints and evaluation all see this one.
        # Built on its device: a 6B model built on the host would take 24 GB of host memory on every rank.
        # From a pretrained model its loaded weights are the start (and so Reptile's first anchor).
        if cfg.model.init_from is not None:
            self.model = load_pretrained(cfg.model.init_from, self.device)
        else:
            with torch.device(self.device):
                self.model = build_model(cfg.model, vocab_size)
        if cfg.activation_checkpointing:
            # Non-reentrant checkpointing works with DDP and torch.compile (transformers 5 renamed the method).
            enable = getattr(self.model, "activation_checkpointing_enable", None)
            if enable is not None:
                enable(activation_checkpointing_kwargs={"use_reentrant": False})
            else:
                self.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        self.n_params, self.n_params_nonembedding = count_parameters(self.model)  # before sharding: whole tensors
        self.sharded = check_parallel(cfg.parallel, self.device, dist.world_size, cfg.fsdp_on_cpu)
        if self.sharded:  # before the optimizer and Reptile, which then hold the shards
            shard_model(self.model, self.device, dist.world_size, cfg.precision)
        elif cfg.parallel == "fsdp":
            log.warning("parallel=fsdp with one process: nothing to shard over, the model is trained whole "
                        "(launch several processes with torchrun or srun to shard it)")
        self.optimizer = build_optimizer(self.model, cfg.optim)
        self.reptile = Reptile(ReptileConfig(k=cfg.k, eps=cfg.eps, anchor_device=cfg.reptile_anchor_device),
                               self.model.parameters())
        # The forward/backward of training may go through torch.compile and DDP; both share self.model's tensors.
        self.train_model = torch.compile(self.model) if cfg.compile else self.model
        self.ddp = None
        if dist.enabled and not self.sharded:
            from torch.nn.parallel import DistributedDataParallel

            # Buffers (RoPE frequencies) are constants: no need to broadcast them every forward
            # (the argument was renamed in recent torch).
            no_buffer_sync = ({"forward_sync_buffers": False} if "forward_sync_buffers"
                              in inspect.signature(DistributedDataParallel).parameters else {"broadcast_buffers": False})
            device_ids = [self.device.index] if self.device.type == "cuda" else None
            self.ddp = DistributedDataParallel(self.train_model, device_ids=device_ids, gradient_as_bucket_view=True,
                                               **no_buffer_sync)
            self.train_model = self.ddp
        # Same sampler on every rank (seeded with rank 0) fed the same global block ids: see the module docstring.
        # With copied tokens each rank keeps its own file (rank 0 keeps the single-process path).
        storage = run_dir / ("buffer" if dist.is_main else f"buffer-rank{dist.rank}")
        self.buffer = ReplayBuffer(cfg.buffer, sequence, seed=cfg.seed, rank=0, storage_dir=storage)
        # The output projection's rows: the tokenizer's size for a built model, the embedding rows (which may
        # be padded past the tokenizer) for a loaded one.
        self.rates = estimate_flops(self.n_params, self.n_params_nonembedding, cfg.model.n_layer, cfg.model.seq_len,
                                    cfg.model.d_model, int(self.model.config.vocab_size))
        self.flops = FlopCounter(self.rates)
        self.position = Position()
        self.metrics = MetricsLog(run_dir / "metrics.jsonl") if dist.is_main else None
        self.task_steps = [t.steps for t in sequence.tasks]
        # The windows that score each task's fixed held-out span: the same at every evaluation.
        windows = cfg.eval.windows(cfg.model.seq_len)  # (context, stride)
        self.eval_plans = [plan_windows(len(t.eval_tokens), *windows) for t in sequence.tasks]
        # eval.grad_alignment: gradient cosines between tasks at every evaluation (None when off; refuses fsdp).
        self.alignment = build_grad_alignment(cfg, self.model, [t.eval_tokens for t in sequence.tasks], self.eval_plans,
                                              dist, self._autocast, self.sharded)
        self._stop_signal: int | None = None
        self._stop_agreed = False  # some rank had a stop signal at the last step's all-reduce
        self.data_wait_s = 0.0  # time spent getting batches (new + replay) since this process started
        self.overhead_s = 0.0  # time spent evaluating and checkpointing since this process started
        self.peak_flops, self.peak_source = (device_peak_flops(self.device, cfg.precision, cfg.peak_flops)
                                             if dist.is_main else (None, ""))
        self._meter = (time.perf_counter(), 0, 0.0)  # (time, training FLOPs, overhead_s) at the last train line
        self._last_mfu: float | None = None  # shown in the progress line

    # ---------------------------------------------------------------- state
    def state_dict(self) -> dict:
        """Everything a resume needs; under FSDP without the sharded parts (model, optimizer, anchor), which
        every rank writes apart (`save`)."""
        reptile = self.reptile.state_dict()
        if self.sharded:
            reptile["anchor"] = None if self.reptile.anchor else []
        return {
            **({} if self.sharded else {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict()}),
            "reptile": reptile, "buffer": self.buffer.state_dict(), "sharded": self.sharded,
            "data": self.sequence.state_dict(), "flops": self.flops.state_dict(),
            "position": self.position.state_dict(), "rng": _rng_state(),
            "metrics_bytes": self.metrics.size() if self.metrics is not None else 0,
            "metrics": self.metrics.checkpoint_state() if self.metrics is not None else None,
            "world_size": self.dist.world_size,
        }

    def load_state_dict(self, state: dict, directory: Path | None = None) -> None:
        """Restore `state` (from `state_dict`); under FSDP also the shards saved in `directory`."""
        saved_world = int(state.get("world_size", 1))
        if saved_world != self.dist.world_size:
            raise ValueError(f"the checkpoint was written by {saved_world} processes, this job has "
                             f"{self.dist.world_size}; resume with the same number of processes")
        if bool(state.get("sharded", False)) != self.sharded:
            was, now = ("fsdp", "ddp") if state.get("sharded") else ("ddp", "fsdp")
            raise ValueError(f"the checkpoint was written with parallel={was} and this job uses parallel={now}: "
                             f"resume with parallel={was}")
        self.reptile.load_state_dict(state["reptile"])
        if self.sharded:
            assert directory is not None, "a sharded checkpoint needs its directory"
            anchor = self.reptile.anchor  # allocated by load_state_dict when the checkpoint has one
            load_sharded(directory / SHARDED_DIR, self.model, self.optimizer, anchor, self.dist.rank)
        else:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
        self.buffer.load_state_dict(state["buffer"])
        self.sequence.load_state_dict(state["data"])
        self.flops.load_state_dict(state["flops"])
        self.position.load_state_dict(state["position"])
        # The LR of the last step taken, which the next record shows (a boundary evaluation follows at once when
        # the checkpoint was taken on a task's last step): the schedule's, not the 0.0 of a step never taken.
        self._last_lr = lr_at(self.position.step - 1, self.task_steps, self.cfg.optim) if self.position.step else 0.0
        _set_rng_state(state["rng"])
        if self.position.step > 0:  # the LR of the last step done: a boundary evaluation right after resuming logs it
            self._last_lr = lr_at(self.position.step - 1, self.task_steps, self.cfg.optim)
        if self.metrics is not None:  # verified, then cut at a record boundary (older checkpoints: the length only)
            self.metrics.truncate(state.get("metrics") or int(state["metrics_bytes"]))

    def save(self) -> None:
        """Rank 0 writes the checkpoint (every rank holds the same state); the others wait for it.

        Under FSDP every rank first writes its shards into rank 0's temporary directory; rank 0 publishes
        it only after all of them (and its own state.pt) are on disk."""
        started = time.perf_counter()
        dist = self.dist
        tmp = begin_checkpoint(self.run_dir) if dist.is_main else self.run_dir / "checkpoint.tmp"
        if self.sharded:
            dist.barrier()  # the temporary directory exists (and is empty) before anyone writes into it
            save_sharded(tmp / SHARDED_DIR, self.model, self.optimizer, self.reptile.anchor, dist.rank)
            dist.barrier()  # every rank's shards are written
        if dist.is_main:
            state = self.state_dict()
            write_state(tmp, state)
            # Last file in, before the rename that publishes the checkpoint: every file's sha256 (verified on resume).
            write_manifest(tmp, state["metrics"], self.position.step)
            commit_checkpoint(self.run_dir)
        dist.barrier()
        self.overhead_s += time.perf_counter() - started

    # ---------------------------------------------------------------- loop
    def fit(self) -> None:
        """Train over all tasks from wherever the checkpoint left off."""
        checkpoint = find_checkpoint(self.run_dir)
        if checkpoint is not None:  # every rank reads rank 0's checkpoint: it describes them all
            self.load_state_dict(load_checkpoint(checkpoint), checkpoint.parent)
            log.info("resumed from %s at step %d", checkpoint.parent.name, self.position.step)
        else:
            if self.metrics is not None:  # lines of a start killed before its first checkpoint: written again now
                self.metrics.truncate(0)
            self.reptile.reset_anchor(0)
            self.evaluate(boundary=False)
        self._install_signal_handlers()
        pos, cfg = self.position, self.cfg
        progress = Progress(self.sequence.total_steps, pos.step, self.sequence.names) if self.dist.is_main else None
        started = time.perf_counter() - pos.wall_time
        self._meter = (time.perf_counter(), self.flops.flops_new + self.flops.flops_replay, self.overhead_s)
        try:
            while pos.task_index < len(self.sequence.tasks):
                task = self.sequence.tasks[pos.task_index]
                if pos.task_step == 0 and pos.task_index > 0 and cfg.reptile_reset_each_task:
                    self.reptile.reset_anchor(pos.step)
                while pos.task_step < task.steps:
                    loss, n_new, n_replay = self.train_step(task)
                    pos.step, pos.task_step = pos.step + 1, pos.task_step + 1
                    if self.reptile.maybe_step(pos.step):  # same weights on every rank: same interpolation
                        self.flops.add_reptile_step()
                    pos.wall_time = time.perf_counter() - started
                    if progress is not None:
                        progress.update(pos.step, task.name, loss, self.flops.tokens_new + self.flops.tokens_replay,
                                        self._last_mfu, self.downstream.note if self.downstream is not None else "")
                        if pos.step % cfg.log_every == 0:
                            self._log_train(loss, progress.tokens_per_s())
                    if pos.step % cfg.eval.every == 0 and pos.task_step < task.steps:
                        self.evaluate(boundary=False)
                    # A signal may reach the ranks between different steps: stop after the step where ANY rank
                    # had it by the step's loss all-reduce (train_step), so that all ranks checkpoint the same
                    # step and none waits for the others for ever. A later signal is seen in the next step.
                    if self._stop_agreed:
                        self.save()
                        which = next((s for s in (self._stop_signal, stop_request.requested()) if s is not None),
                                     "on another rank")
                        raise TrainingStopped(f"stopped by signal {which} at step {pos.step}; checkpoint saved, "
                                              "run the same command again to resume")
                    if pos.step % cfg.checkpoint_every == 0:
                        self.save()
                # The task's last window, shorter than k (if any): interpolated only when asked for. Idempotent on
                # a resume from a checkpoint of the task's last step (the anchor is then already at this step).
                if cfg.reptile_at_task_end and self.reptile.step_partial_window(pos.step):
                    self.flops.add_reptile_step()
                losses = self.evaluate(boundary=True)
                if cfg.export_each_task:
                    self.export_task_model(task.name, losses)
                if self.downstream is not None:
                    self._score_downstream(task.name)
                pos.task_index, pos.task_step = pos.task_index + 1, 0
                fault_point("task_boundary")
                self.save()
        finally:
            if progress is not None:
                progress.close()

    def train_step(self, task) -> tuple[float, int, int]:
        """One optimizer step on `round((1-alpha)*B)` new blocks plus replayed ones (B summed over ranks);
        returns the mean loss over the global batch and its new and replayed row counts."""
        cfg, index, dist = self.cfg, self.position.task_index, self.dist
        step_started = time.perf_counter()
        # The global plan, identical on every rank: B rows [new block ids | replay draw (shared sampler)].
        # This rank trains rows [lo, hi) of it and reads only those: its new blocks and its replayed ones.
        batch_size, rows = cfg.optim.batch_size, cfg.optim.batch_size // dist.world_size
        lo, hi = dist.rank * rows, (dist.rank + 1) * rows
        window = (lo, hi, batch_size)
        replay_refs, replay_tokens = self.buffer.sample(cfg.n_replay_per_step, index, window)  # [m], [<= m, T+1]
        n_short = cfg.n_replay_per_step - len(replay_refs)  # buffer still (almost) empty: fill with new data
        new_ids = task.stream.next_block_ids(cfg.n_new_per_step + n_short)  # [B - m]
        # Copied storage needs every new block's tokens anyway: read them once and slice this rank's rows.
        all_new = task.stream.read(new_ids) if cfg.buffer.storage == "copy" else None  # [B - m, T+1]
        mine = all_new[lo:hi] if all_new is not None else task.stream.read(new_ids[lo:hi])
        blocks = np.concatenate([p for p in (mine, replay_tokens) if len(p)])  # [B/W, T+1]
        batch = torch.from_numpy(blocks.astype(np.int64))  # [B/W, T+1]
        if self.device.type == "cuda":  # page-locked host memory lets the copy overlap with compute
            batch = batch.pin_memory()
        batch = batch.to(self.device, non_blocking=True)
        # Every rank adds the GLOBAL new ids, so the buffers stay identical. Added (and the next replay rows
        # prefetched) before the forward pass so that the background read overlaps with compute. With
        # alpha=0 nothing is ever replayed, so nothing is stored (at paper scale that is GBs per rank).
        if cfg.n_replay_per_step:
            self.buffer.add(index, new_ids, all_new)
            if cfg.buffer.prefetch:
                self.buffer.prefetch(cfg.n_replay_per_step, index, window)
        self.data_wait_s += time.perf_counter() - step_started

        lr = lr_at(self.position.step, self.task_steps, cfg.optim)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        micro_batches = batch.chunk(cfg.optim.grad_accum)  # [b, T+1] each
        loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        for i, micro in enumerate(micro_batches):
            # DDP all-reduces (FSDP reduce-scatters) the gradients during the last micro-batch's backward only.
            last = i == len(micro_batches) - 1
            if self.sharded:
                self.model.set_requires_gradient_sync(last)
            with nullcontext() if self.ddp is None or last else self.ddp.no_sync():
                with self._autocast():
                    logits = self.train_model(input_ids=micro[:, :-1]).logits  # [b, T, V]
                    loss = F.cross_entropy(logits.float().flatten(0, 1), micro[:, 1:].flatten())
                (loss / cfg.optim.grad_accum).backward()
            loss_sum += loss.detach().double() / cfg.optim.grad_accum
        # One all-reduce and one wait for the GPU per step carry both the global mean loss (every rank has as
        # many rows and tokens, so the mean of the rank means; a NaN anywhere makes it NaN everywhere, so all
        # ranks stop together) and whether any rank has a stop signal (so that all stop after the same step).
        reduced = torch.zeros(2, dtype=torch.float64, device=self.device)
        reduced[0] = loss_sum
        if self._stop_signal is not None or stop_request.requested() is not None:  # this run's, or its sweep's
            reduced[1] = 1.0  # a fill on the device: no host-to-device copy that would wait for the GPU
        loss_total, stops = dist.sum(reduced).tolist()
        total_loss, self._stop_agreed = loss_total / dist.world_size, stops > 0
        if not math.isfinite(total_loss):
            raise TrainingStopped(f"the loss is {total_loss} at step {self.position.step + 1}; stopped without "
                                  "saving, the last good checkpoint is intact; lower optim.lr or check the data")
        if cfg.optim.grad_clip > 0:  # gradients are already averaged: the same norm on every rank
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.optim.grad_clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

        seq_len = cfg.model.seq_len
        n_new, n_replay = len(new_ids), len(replay_refs)
        self.flops.add_train_step(n_new * seq_len, n_replay * seq_len)
        self._last_lr = lr
        return total_loss, n_new, n_replay

    @torch.no_grad()  # not inference_mode: FSDP's unsharded parameters must stay usable by training
    def evaluate(self, boundary: bool) -> dict[str, float]:
        """Mean token loss on the fixed held-out span of every task; appended to metrics.jsonl.

        The span is cut into windows of eval.context tokens, eval.stride apart, that score every target
        exactly once (`mer.evaluation.windows.plan_windows`), eval.batch_size windows per forward. Rank r evaluates
        batches r, r+W, r+2W... of every task; the sums are added over ranks. Under FSDP a forward is
        collective, so a rank past the last batch runs one more on its first batch, uncounted."""
        started = time.perf_counter()
        self.model.eval()
        dist, size = self.dist, self.cfg.eval.batch_size
        # Loss sums stay on the device (no host sync per batch); the counts are known from the plans.
        sums = torch.zeros(len(self.sequence.tasks), dtype=torch.float64, device=self.device)
        counts = []
        for t, (task, plan) in enumerate(zip(self.sequence.tasks, self.eval_plans)):
            n_batches = -(-plan.n_windows // size)
            batches: list[int | None] = list(range(dist.rank, n_batches, dist.world_size))
            if self.sharded:  # as many forwards as rank 0, which has the most batches; None: uncounted
                batches += [None] * (len(range(0, n_batches, dist.world_size)) - len(batches))
            for b in batches:
                rows = slice((b or 0) * size, (b or 0) * size + size)
                ids = task.eval_tokens[plan.positions(rows)].astype(np.int64)  # [b, T+1] inputs and targets
                window = torch.from_numpy(ids).to(self.device)
                # Targets an earlier window scored are ignored (-100); offsets before `lo` are scored by no window
                # of this batch, so the model computes no logits for them (most of a stride < context window).
                first = plan.first_scored[rows]  # [b]
                lo = int(first.min())
                unscored = torch.from_numpy(np.arange(lo, plan.length) < first[:, None]).to(self.device)  # [b, T-lo]
                targets = window[:, 1 + lo:].masked_fill(unscored, -100)  # [b, T-lo]; -100: the ignore_index
                with self._autocast():  # logits [b, T-lo, V]: the offsets from lo on only
                    logits = self.model(input_ids=window[:, :-1], logits_to_keep=plan.length - lo).logits
                loss = F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), reduction="sum")
                if b is not None:
                    sums[t] += loss.double()
            counts.append(plan.n_tokens - 1)
            self.flops.add_eval(plan.n_windows * plan.length)  # every window's forward, scored or not
        totals = dist.sum(sums).tolist()  # [n_tasks]
        losses = {task.name: total / count for task, total, count in zip(self.sequence.tasks, totals, counts)}
        alignment: dict = {}
        if self.alignment is not None:  # gradient cosines of the current task with the earlier ones (mer.evaluation.grad_alignment)
            current = min(self.position.task_index, len(self.sequence.tasks) - 1)
            alignment, tokens = self.alignment.measure(current, self.sequence.names)
            self.flops.add_eval(tokens, backward=True)
        self.model.train()
        fault_point("evaluation")
        if self.metrics is not None:
            self.metrics.append({**self._record("eval"), "val_loss": losses, "boundary": boundary, **alignment})
        self.overhead_s += time.perf_counter() - started
        return losses

    def export_task_model(self, task_name: str, losses: dict[str, float]) -> None:
        """Keep the model of this task boundary as a Hugging Face folder, `models/after_<task>/` (export_each_task).

        Under FSDP every rank takes part in gathering the whole weights onto rank 0 (on the host), which writes
        them; the others wait. Written atomically (`mer.hf.export.write_hf_model`)."""
        from mer.hf.export import task_model_dir, write_hf_model
        from mer.hf.model_card import model_card

        started = time.perf_counter()
        state = None
        if self.sharded:
            from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

            state = get_model_state_dict(self.model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        if self.dist.is_main:
            if self.tokenizer_dir is None:
                raise ValueError("export_each_task needs the tokenizer's folder (Trainer(tokenizer_dir=...))")
            card = model_card(self.run_dir.name, asdict(self.cfg), self.sequence.names, task_name, losses)
            write_hf_model(task_model_dir(self.run_dir, task_name), self.model.config, self.tokenizer_dir, card,
                           model=None if self.sharded else self.model, state_dict=state)
            log.info("task %s: model kept in %s", task_name, task_model_dir(self.run_dir, task_name))
        self.dist.barrier()
        self.overhead_s += time.perf_counter() - started

    def _score_downstream(self, task_name: str) -> None:
        """eval.downstream at the end of `task_name`: rank 0 scores the live model; the others wait. The tokens it
        forwarded count as evaluation FLOPs on every rank."""
        started = time.perf_counter()
        forwarded = torch.zeros((), dtype=torch.float64, device=self.device)
        if self.dist.is_main:
            index = self.sequence.names.index(task_name)
            forwarded += self.downstream.score(self.model, task_name, index, self.position.step,
                                               self.cfg.precision == "bf16")
            self.model.train()
        self.flops.add_eval(int(self.dist.sum(forwarded).item()))
        self.overhead_s += time.perf_counter() - started

    # ---------------------------------------------------------------- helpers
    def _autocast(self):
        """bf16 autocast of the forward pass; weights, gradients, Adam state and the Reptile anchor stay fp32."""
        return torch.autocast("cuda", dtype=torch.bfloat16) if self.cfg.precision == "bf16" else nullcontext()

    def _record(self, event: str) -> dict:
        pos = self.position
        index = min(pos.task_index, len(self.sequence.tasks) - 1)  # after fit() the position is past the end
        return {"event": event, "step": pos.step, "task": self.sequence.names[index],
                "task_index": index, **self.flops.as_dict(),
                "lr": getattr(self, "_last_lr", 0.0), "wall_time": round(pos.wall_time, 3)}

    def _log_train(self, loss: float, tokens_per_s: float) -> None:
        # MFU over the steps since the last train line, without the time spent evaluating and checkpointing.
        now, flops, overhead = time.perf_counter(), self.flops.flops_new + self.flops.flops_replay, self.overhead_s
        then, flops_then, overhead_then = self._meter
        self._meter = (now, flops, overhead)
        utilisation = mfu(flops - flops_then, (now - then) - (overhead - overhead_then), self.peak_flops,
                          self.dist.world_size)
        self._last_mfu = utilisation
        self.metrics.append({**self._record("train"), "loss": loss, "tokens_per_s": tokens_per_s,
                             "data_wait_s": round(self.data_wait_s, 4),
                             "mfu": None if utilisation is None else round(utilisation, 5)})

    def _install_signal_handlers(self) -> None:
        # Slurm sends SIGUSR1 (with --signal) or SIGTERM before preemption / the time limit: finish the
        # current step, checkpoint, stop. Only possible from the main thread.
        def handler(signum, frame):
            self._stop_signal = signum
            stop_request.request(signum)  # in a sweep: no later job starts, even if this one ends without a stop

        if sys.platform != "win32":
            try:
                signal.signal(signal.SIGTERM, handler)
                signal.signal(signal.SIGUSR1, handler)
            except ValueError:
                log.warning("not in the main thread: SIGTERM/SIGUSR1 will not checkpoint")
