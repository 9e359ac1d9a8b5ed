"""bench_gpu.py's settings and what every variant is built from: the `Bench` options of one
invocation, the run config of a model at a replay rate, a trainer positioned on the replay task, and
activation checkpointing switched on as the trainer does it."""

from __future__ import annotations

import tempfile
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch

from mer.config.run_config import RunConfig
from mer.data.config import DataConfig
from mer.data.pipeline import PreparedData
from mer.data.stream import TaskSequence
from mer.model.llama import get_preset
from mer.optim.schedule import OptimConfig
from mer.replay.buffer import BufferConfig
from mer.training.trainer import Trainer

N_TASKS = 3  # tasks 1-2 fill the buffer, task 3 is trained on
REPLAY_TASK = 2  # index of the task every variant trains on
MFU_TARGET = {"560m": 0.40}  # the target; other presets are reported without one
REPTILE_K = (500, 100)
GiB = 2**30
TRAINER0 = "trainer alpha=0"  # the variant Reptile is timed on and the replay variant is compared with


@dataclass
class Bench:
    """The resolved settings shared by every model of one invocation."""

    device: torch.device
    """Where training runs."""
    precision: str
    """bf16 (autocast, fp32 master weights) or fp32."""
    batch: int
    """Sequences per optimizer step (new + replayed)."""
    grad_accum: int
    """Micro-batches per optimizer step."""
    seq_len: int | None
    """Block length overriding the presets' (None keeps theirs: 2048 for the paper's ladder)."""
    compile: bool
    """torch.compile the training forward/backward."""
    activation_checkpointing: bool
    """Recompute each block's activations in the backward pass."""
    alpha: float
    """Replay ratio of the replay variant."""
    prefetch: bool
    """buffer.prefetch of the replay variant."""
    plain_model: str
    """shared: the plain loop drives the alpha=0 trainer's model and optimizer; own: it builds its own."""
    warmup: int
    """Untimed steps of every variant before the rounds."""
    steps: int
    """Optimizer steps per variant and round."""
    rounds: int
    """Interleaved rounds."""
    reptile_reps: int
    """Reptile interpolations timed per anchor device and round."""
    peak_flops: float | None
    """Peak FLOP/s of the device for MFU (None: mer.compute.mfu's table or the measured CPU rate)."""

    def __post_init__(self) -> None:
        if not 0 < self.alpha < 1:
            raise ValueError(f"--alpha {self.alpha} must be in (0, 1): alpha=0 is always measured")
        if self.batch % self.grad_accum:
            raise ValueError(f"--batch {self.batch} is not divisible by --grad-accum {self.grad_accum}")
        for name in ("steps", "rounds", "reptile_reps"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1")
        if self.warmup < 0:
            raise ValueError("--warmup must be >= 0")

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    def sync(self) -> None:
        """Wait for the GPU's queued work, so that a wall-clock time covers it."""
        if self.cuda:
            torch.cuda.synchronize(self.device)

    def autocast(self):
        return torch.autocast("cuda", dtype=torch.bfloat16) if self.precision == "bf16" else nullcontext()


def run_config(bench: Bench, model: str, alpha: float, data: DataConfig, runs_dir: Path) -> RunConfig:
    """The default config (conf/config.yaml + groups) with this benchmark's knobs; k=0: Reptile is timed apart."""
    model_cfg = get_preset(model) if bench.seq_len is None else get_preset(model, seq_len=bench.seq_len)
    return RunConfig(
        alpha=alpha, k=0, eps=0.1, seed=0, model=model_cfg, data=data,
        optim=OptimConfig(lr=3e-3, min_lr=3e-4, batch_size=bench.batch, grad_accum=bench.grad_accum),
        buffer=BufferConfig(policy="all", storage="reference", prefetch=bench.prefetch),
        runs_dir=str(runs_dir), device=str(bench.device), precision=bench.precision, compile=bench.compile,
        activation_checkpointing=bench.activation_checkpointing,
    )


def make_trainer(cfg: RunConfig, prepared: PreparedData, runs_dir: Path, name: str) -> Trainer:
    """A trainer positioned on task 3, with the TaskSequence built as `mer.launch.runner` builds it."""
    sequence = TaskSequence(
        prepared.shards, cfg.model.seq_len, cfg.n_new_per_step, cfg.seed, cfg.task_budgets, cfg.data.budget_steps,
        cfg.data.allow_repeat, cfg.data.eval_tokens,
        replay_blocks_per_step=cfg.n_replay_per_step, replay_current_task=cfg.buffer.replay_current_task,
    )
    trainer = Trainer(cfg, sequence, len(prepared.tokenizer), Path(tempfile.mkdtemp(prefix=f"{name}-", dir=runs_dir)))
    trainer.position.task_index = REPLAY_TASK
    return trainer


def enable_checkpointing(model: torch.nn.Module) -> None:
    """Activation checkpointing switched on exactly as `Trainer.__init__` does it."""
    enable = getattr(model, "activation_checkpointing_enable", None)
    if enable is not None:
        enable(activation_checkpointing_kwargs={"use_reentrant": False})
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
