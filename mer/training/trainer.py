"""The trainer: the only place that knows the order of an optimizer step.

One step (docs/design.md): draw round((1-alpha)*B) new blocks and the rest from the replay buffer ->
forward/backward (micro-batches) -> clip -> AdamW with the scheduled LR -> add the new blocks to the
buffer -> every k steps a Reptile interpolation -> count FLOPs -> evaluate / log / checkpoint.
Resume is the default path: `fit()` first loads the run directory's checkpoint if there is one.

Data parallelism (W processes, `mer.parallel.distributed`): every rank builds the same GLOBAL plan of the step's
B rows and trains its B/W of them (`mer.training.step_batch`); DDP averages the gradients, so W processes take
the step one process of B rows takes (up to float summation order). Weights, optimizer state and Reptile
anchors stay identical on all ranks (sharded over them with `parallel=fsdp`, `mer.parallel.sharding`); rank 0
alone writes the run directory, and its checkpoint restores every rank."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path

import torch
import torch.nn.functional as F

from mer.compute.flops import FlopCounter, estimate_flops
from mer.compute.mfu import device_peak_flops
from mer.config.run_config import RunConfig
from mer.data.stream import TaskSequence
from mer.evaluation.grad_alignment import build_grad_alignment, check_grad_alignment
from mer.evaluation.windows import plan_windows
from mer.files.fault_points import fault_point
from mer.optim.reptile import Reptile, ReptileConfig
from mer.optim.schedule import build_optimizer, lr_at
from mer.parallel.distributed import Distributed
from mer.parallel.sharding import SHARDED_DIR, check_parallel, load_sharded
from mer.replay.buffer import ReplayBuffer
from mer.rundir.checkpoint import find_checkpoint, load_checkpoint
from mer.rundir.layout import MetricsLog
from mer.signals import stop_request
from mer.training import task_boundary
from mer.training.checkpointing import check_same_layout, write_checkpoint
from mer.training.held_out import held_out_losses
from mer.training.model_setup import build_training_model, wrap_for_training
from mer.training.pending_loss import NonFiniteLoss, PendingLoss
from mer.training.position import Position, rng_state, set_rng_state
from mer.training.progress import Progress
from mer.training.step_batch import assemble_batch
from mer.training.stop_signals import install_stop_handlers
from mer.training.train_log import MfuMeter, train_record
from mer.training.world_size import check_world_size

__all__ = ["Trainer", "TrainingStopped", "check_world_size"]
log = logging.getLogger(__name__)


class TrainingStopped(Exception):
    """Training stopped early with a checkpoint in place (a signal) or without a new one (NaN loss)."""


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
        # eval.downstream scores the live model at task boundaries; first, so that an unknown task name is refused
        # before the model is even built.
        self.downstream = task_boundary.live_downstream(cfg, dist, run_dir, tokenizer_dir, task_folders)
        torch.manual_seed(cfg.seed)
        random.seed(cfg.seed)
        # The fp32 module (built or loaded on its device, sharded under FSDP before the optimizer and Reptile,
        # which then hold the shards); the training forward may go through torch.compile and DDP.
        built = build_training_model(cfg, dist, vocab_size)
        self.model, self.sharded = built.model, built.sharded
        self.n_params, self.n_params_nonembedding = built.n_params, built.n_params_nonembedding
        self.optimizer = build_optimizer(self.model, cfg.optim)
        self.reptile = Reptile(ReptileConfig(k=cfg.k, eps=cfg.eps, anchor_device=cfg.reptile_anchor_device),
                               self.model.parameters())
        wrap_for_training(built, cfg, dist)
        self.train_model, self.ddp = built.forward, built.ddp
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
        self.mfu_meter = MfuMeter(self.peak_flops, dist.world_size)
        self.pending_loss = PendingLoss(self.device)  # the last step's loss, read without a host wait

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
            "position": self.position.state_dict(), "rng": rng_state(),
            "metrics_bytes": self.metrics.size() if self.metrics is not None else 0,
            "metrics": self.metrics.checkpoint_state() if self.metrics is not None else None,
            "world_size": self.dist.world_size,
        }

    def load_state_dict(self, state: dict, directory: Path | None = None) -> None:
        """Restore `state` (from `state_dict`); under FSDP also the shards saved in `directory`."""
        check_same_layout(state, self.dist.world_size, self.sharded)
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
        set_rng_state(state["rng"])
        if self.metrics is not None:  # verified, then cut at a record boundary (older checkpoints: the length only)
            self.metrics.truncate(state.get("metrics") or int(state["metrics_bytes"]))

    def save(self) -> None:
        """Write the checkpoint (`mer.training.checkpointing`): rank 0's state, every rank's shards under FSDP."""
        started = time.perf_counter()
        sharded = (self.model, self.optimizer, self.reptile.anchor) if self.sharded else None
        write_checkpoint(self.run_dir, self.dist, self.position.step, self.state_dict, sharded)
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
        install_stop_handlers(lambda signum: setattr(self, "_stop_signal", signum))
        pos, cfg = self.position, self.cfg
        progress = Progress(self.sequence.total_steps, pos.step, self.sequence.names) if self.dist.is_main else None
        started = time.perf_counter() - pos.wall_time
        self.mfu_meter.start(self.flops, self.overhead_s)
        try:
            while pos.task_index < len(self.sequence.tasks):
                task = self.sequence.tasks[pos.task_index]
                if pos.task_step == 0 and pos.task_index > 0 and cfg.reptile_reset_each_task:
                    self.reptile.reset_anchor(pos.step)
                while pos.task_step < task.steps:
                    self.train_step(task)
                    pos.step, pos.task_step = pos.step + 1, pos.task_step + 1
                    if self.reptile.maybe_step(pos.step):  # same weights on every rank: same interpolation
                        self.flops.add_reptile_step()
                    pos.wall_time = time.perf_counter() - started
                    # Before anything is written (a log line, an evaluation, a checkpoint) the step's loss is read
                    # and checked; otherwise the next step reads it, and the host runs ahead of the GPU.
                    if (pos.step % cfg.log_every == 0 or pos.step % cfg.eval.every == 0 or self._stop_agreed
                            or pos.step % cfg.checkpoint_every == 0 or pos.task_step == task.steps):
                        self.read_loss()
                    if progress is not None:
                        progress.update(pos.step, task.name, self.pending_loss.last, self.flops.tokens_new
                                        + self.flops.tokens_replay, self.mfu_meter.last,
                                        self.downstream.note if self.downstream is not None else "")
                        if pos.step % cfg.log_every == 0:
                            self._log_train(self.pending_loss.last, progress.tokens_per_s())
                    if pos.step % cfg.eval.every == 0 and pos.task_step < task.steps:
                        self.evaluate(boundary=False)
                    # A signal may reach the ranks between different steps: stop after the step where ANY rank
                    # had it by the step's all-reduce of the flags (train_step; one process: its own flag), so that
                    # all ranks checkpoint the same step and none waits for the others for ever.
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

    def train_step(self, task) -> tuple[torch.Tensor, int, int]:
        """One optimizer step on `round((1-alpha)*B)` new blocks plus replayed ones (B summed over ranks);
        returns the mean loss over the global batch (on the device, unread) and its new and replayed row counts."""
        cfg, index, dist = self.cfg, self.position.task_index, self.dist
        step_started = time.perf_counter()
        # The global plan, identical on every rank: B rows [new block ids | replay draw (shared sampler)].
        # This rank trains rows [lo, hi) of it and reads only those: its new blocks and its replayed ones.
        step_batch = assemble_batch(cfg, self.buffer, task, index, dist)  # this rank's rows, [B/W, T+1]
        self.data_wait_s += time.perf_counter() - step_started

        lr = lr_at(self.position.step, self.task_steps, cfg.optim)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        micro_batches = step_batch.tokens.chunk(cfg.optim.grad_accum)  # [b, T+1] each
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
        # The loss stays on the device (`mer.training.pending_loss`): the check of the previous step's runs here,
        # once this step is queued, so the host never waits for the GPU in the step. With several ranks one
        # all-reduce carries the global mean loss (equal rows and tokens per rank: the mean of the rank means; a
        # NaN anywhere is NaN everywhere, so all ranks stop together) and whether any rank has a stop signal
        # (so all stop after the same step), which is read at once.
        stop_here = self._stop_signal is not None or stop_request.requested() is not None  # this run's, or sweep's
        loss_total, self._stop_agreed = loss_sum, stop_here
        if dist.enabled:
            reduced = torch.zeros(2, dtype=torch.float64, device=self.device)
            reduced[0] = loss_sum
            if stop_here:
                reduced[1] = 1.0  # a fill on the device: no host-to-device copy that would wait for the GPU
            summed = dist.sum(reduced)
            loss_total, self._stop_agreed = summed[0] / dist.world_size, bool(summed[1].item() > 0)
        self.read_loss()
        if cfg.optim.grad_clip > 0:  # gradients are already averaged: the same norm on every rank
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.optim.grad_clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

        seq_len = cfg.model.seq_len
        self.flops.add_train_step(step_batch.n_new * seq_len, step_batch.n_replay * seq_len)
        self._last_lr = lr
        self.pending_loss.put(self.position.step + 1, loss_total)
        return loss_total, step_batch.n_new, step_batch.n_replay

    def read_loss(self) -> float | None:
        """The loss of the last step not read yet (None if none); a NaN or inf stops training unsaved."""
        try:
            return self.pending_loss.take()
        except NonFiniteLoss as bad:
            raise TrainingStopped(f"{bad}; stopped without saving, the last good checkpoint is intact; lower "
                                  "optim.lr or check the data") from None

    @torch.no_grad()  # not inference_mode: FSDP's unsharded parameters must stay usable by training
    def evaluate(self, boundary: bool) -> dict[str, float]:
        """Mean token loss on the fixed held-out span of every task (`mer.training.held_out`), with the gradient
        alignment when it is on; appended to metrics.jsonl."""
        started = time.perf_counter()
        self.model.eval()
        losses = held_out_losses(self.model, self.sequence.tasks, self.eval_plans, self.dist, self.cfg.eval.batch_size,
                                 self.sharded, self._autocast, self.flops)
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
        """`models/after_<task>/` at this task boundary (export_each_task; `mer.training.task_boundary`)."""
        started = time.perf_counter()
        task_boundary.export_task_model(self.model, self.cfg, self.run_dir, self.tokenizer_dir, self.sequence.names, task_name,
                          losses, self.sharded, self.dist)
        self.overhead_s += time.perf_counter() - started

    def _score_downstream(self, task_name: str) -> None:
        started = time.perf_counter()
        task_boundary.score_downstream(self.downstream, self.model, self.sequence.names, task_name, self.position.step,
                         self.cfg.precision == "bf16", self.dist, self.flops,
                         self.metrics.append if self.metrics is not None else None, self._record("downstream"))
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
        utilisation = self.mfu_meter.measure(self.flops, self.overhead_s)
        self.metrics.append(train_record(self._record("train"), loss, tokens_per_s, self.data_wait_s, utilisation))
