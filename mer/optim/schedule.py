"""Optimizer settings, the learning-rate schedule (pure functions) and the AdamW builder.

The schedule follows the paper: one linear warmup (about 1% of all steps) then one cosine decay to
`min_lr` over ALL steps of ALL tasks, with the optimizer state kept across tasks. The option
`rewarm_each_task` instead restarts warmup + cosine in every task's segment of steps (the
"re-warming" of Ibrahim et al. 2024, Simple and Scalable Strategies to Continually Pre-train LLMs).

Step convention: `step` is the number of optimizer steps already done, so the update taken at
`step` uses `lr_at(step, ...)`. With W warmup steps and T total steps, with u = step + 1:

    lr(u) = lr * u / W                                             for u <= W
    lr(u) = min_lr + (lr - min_lr) * (1 + cos(pi * (u - W) / (T - W))) / 2   for W < u <= T
    lr(u) = min_lr                                                 for u > T

so the first update already has a non-zero rate, the last warmup step reaches `lr`, and the last
of the T steps uses exactly `min_lr`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch


@dataclass
class OptimConfig:
    """AdamW and learning-rate schedule settings."""

    lr: float = 3e-4
    """Peak learning rate (reached at the end of warmup)."""
    min_lr: float = 3e-5
    """Learning rate at the end of the cosine decay."""
    betas: tuple[float, float] = (0.9, 0.95)
    """AdamW (beta1, beta2)."""
    adam_eps: float = 1e-8
    """AdamW epsilon."""
    weight_decay: float = 0.1
    """Decoupled weight decay, applied to weight matrices and embeddings only (see `build_optimizer`)."""
    grad_clip: float = 1.0
    """Clip the global gradient norm to this value; 0 disables clipping."""
    warmup_fraction: float = 0.01
    """Warmup length as a fraction of the schedule's steps (of each task's steps when re-warming)."""
    rewarm_each_task: bool = False
    """Restart warmup + cosine at every task instead of one schedule over all tasks."""
    batch_size: int = 32
    """Sequences per optimizer step (new + replayed), summed over micro-batches."""
    grad_accum: int = 1
    """Micro-batches per optimizer step; `batch_size` must be divisible by it."""
    fused: bool | None = None
    """Use torch's fused AdamW kernel; None picks it when every parameter is on a GPU (foreach otherwise)."""

    def __post_init__(self) -> None:
        if isinstance(self.betas, list):  # OmegaConf hands tuples over as lists
            self.betas = tuple(self.betas)
        if not 0 < self.lr < math.inf:
            raise ValueError(f"optim.lr={self.lr!r}: must be > 0, e.g. 3e-4")
        if not 0 <= self.min_lr <= self.lr:
            raise ValueError(f"optim.min_lr={self.min_lr!r}: must be in [0, lr={self.lr}], e.g. lr/10")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ValueError(f"optim.betas={self.betas!r}: need two values in [0, 1), e.g. [0.9, 0.95]")
        if not 0 < self.adam_eps < math.inf:
            raise ValueError(f"optim.adam_eps={self.adam_eps!r}: must be > 0, e.g. 1e-8")
        if not 0 <= self.weight_decay < math.inf:
            raise ValueError(f"optim.weight_decay={self.weight_decay!r}: must be >= 0, e.g. 0.1")
        if not 0 <= self.grad_clip < math.inf:
            raise ValueError(f"optim.grad_clip={self.grad_clip!r}: must be >= 0 (0 disables clipping)")
        if not 0 <= self.warmup_fraction < 1:
            raise ValueError(f"optim.warmup_fraction={self.warmup_fraction!r}: must be in [0, 1), e.g. 0.01")
        for field in ("batch_size", "grad_accum"):
            value = getattr(self, field)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"optim.{field}={value!r}: must be a positive integer")
        if self.batch_size % self.grad_accum != 0:
            raise ValueError(
                f"optim.grad_accum={self.grad_accum}: batch_size={self.batch_size} is not divisible by it; "
                f"choose grad_accum dividing batch_size"
            )

    @property
    def micro_batch_size(self) -> int:
        """Sequences per micro-batch."""
        return self.batch_size // self.grad_accum


def warmup_steps_for(total_steps: int, warmup_fraction: float) -> int:
    """Warmup length: `warmup_fraction * total_steps` rounded half up, at least 1 when the fraction is positive."""
    if warmup_fraction <= 0 or total_steps <= 0:
        return 0
    return min(total_steps, max(1, math.floor(warmup_fraction * total_steps + 0.5)))


def warmup_cosine(step: int, total_steps: int, warmup_steps: int, lr: float, min_lr: float) -> float:
    """Learning rate of the update taken after `step` steps (see the module docstring for the formula)."""
    if step < 0:
        raise ValueError(f"step={step} must be >= 0")
    u = step + 1
    if u <= warmup_steps:
        return lr * u / warmup_steps
    if u >= total_steps:
        return min_lr
    progress = (u - warmup_steps) / (total_steps - warmup_steps)  # in (0, 1)
    return min_lr + (lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


def lr_at(step: int, task_steps: Sequence[int], cfg: OptimConfig) -> float:
    """Learning rate of the update taken after `step` global optimizer steps.

    `task_steps[i]` is the number of optimizer steps of task i. Without re-warming, one schedule
    spans `sum(task_steps)`; with `cfg.rewarm_each_task`, task i's segment
    `[sum(task_steps[:i]), sum(task_steps[:i+1]))` has its own warmup and cosine.
    Steps past the end get `min_lr`.
    """
    if not task_steps or any(n < 0 for n in task_steps):
        raise ValueError(f"task_steps={list(task_steps)!r}: need one non-negative step count per task")
    if not cfg.rewarm_each_task:
        total = sum(task_steps)
        return warmup_cosine(step, total, warmup_steps_for(total, cfg.warmup_fraction), cfg.lr, cfg.min_lr)
    start = 0
    for n in task_steps:
        if step < start + n:
            return warmup_cosine(step - start, n, warmup_steps_for(n, cfg.warmup_fraction), cfg.lr, cfg.min_lr)
        start += n
    return cfg.min_lr


def build_optimizer(model: torch.nn.Module, cfg: OptimConfig) -> torch.optim.AdamW:
    """AdamW over the trainable parameters with two groups: decay and no decay.

    Weight decay applies to every parameter with two or more dimensions (the linear weights and
    the embedding / output matrices) and not to 1-D ones (RMSNorm gains, biases if any). This is
    the split of nanoGPT and of the paper's GPT-NeoX code: decaying a norm gain pulls a scale
    toward zero, which regularises nothing useful. Embeddings stay in the decay group as in those
    references. The learning rate starts at `cfg.lr`; the trainer sets it every step from `lr_at`.

    `fused=None` picks the fused kernel when every parameter is on CUDA and the foreach
    implementation otherwise (works on CPU, where fused AdamW is not available in every build).
    """
    decay, no_decay = [], []
    for p in model.parameters():  # tied tensors are yielded once
        if p.requires_grad:
            (decay if p.dim() >= 2 else no_decay).append(p)
    groups = [
        {"params": decay, "weight_decay": cfg.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    fused = cfg.fused
    if fused is None:
        fused = all(p.is_cuda for p in decay + no_decay)
    return torch.optim.AdamW(
        groups, lr=cfg.lr, betas=cfg.betas, eps=cfg.adam_eps,
        fused=fused or None, foreach=None if fused else True,
    )
