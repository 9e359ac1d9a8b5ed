"""Reptile gradient alignment for LLM pre-training: interpolate toward the weights of k steps ago.

Every `k` optimizer steps: `theta <- theta_anchor + eps * (theta - theta_anchor)`, then
`theta_anchor <- theta` (Abbes et al. 2025; the large-batch form of Riemer et al.'s MER, one
interpolation per k optimizer steps instead of per example).

The interpolation acts in place on the parameters the optimizer updates (the fp32 master
weights), not on a low-precision copy that the next optimizer step would overwrite, and the anchor
is part of `state_dict()` so a resumed run keeps it. The optimizer state (Adam moments) is left
alone, as in the paper.

Under FSDP (`mer.parallel.sharding`) the parameters are DTensors and Reptile works on each rank's local shard:
the anchor is a shard too, and the interpolation, being elementwise, needs no communication.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch

from mer.parallel.sharding import local_tensor


@dataclass
class ReptileConfig:
    """Reptile settings."""

    k: int | None = 0
    """Interval in optimizer steps between interpolations; 0 or None turns Reptile off."""
    eps: float = 0.1
    """Meta step size in (0, 1]; 1 leaves the weights unchanged (an exact no-op, nothing is computed)."""
    anchor_device: str = "cpu"
    """Device of the anchor copy ("cpu" keeps GPU memory free at the cost of a transfer every k steps)."""

    def __post_init__(self) -> None:
        if self.k is not None and (not isinstance(self.k, int) or isinstance(self.k, bool) or self.k < 0):
            raise ValueError(f"k={self.k!r}: must be a non-negative integer (0 or null turns Reptile off)")
        if not 0 < self.eps <= 1:
            raise ValueError(f"eps={self.eps!r}: must be in (0, 1], e.g. 0.1 (1 is a no-op)")
        try:
            torch.device(self.anchor_device)
        except (RuntimeError, TypeError) as err:
            raise ValueError(f"anchor_device={self.anchor_device!r}: not a torch device, e.g. 'cpu' or 'cuda'") from err

    @property
    def active(self) -> bool:
        """Whether any interpolation can change the weights (k > 0 and eps < 1)."""
        return bool(self.k) and self.eps < 1


class Reptile:
    """Holds the anchor and does the interpolation every `k` optimizer steps.

    The trainer calls `reset_anchor(step)` at the start of training and of every task, and
    `maybe_step(step)` after every optimizer step with `step` = optimizer steps done so far.
    An interpolation happens when `k` steps have passed since the anchor was last set (a
    `maybe_step` without any anchor sets one and returns False).
    When inactive (k=0/None or eps=1) no anchor is kept and nothing is computed, so the run is
    bit-identical to one without Reptile.
    """

    def __init__(self, cfg: ReptileConfig, params: Iterable[torch.Tensor]):
        self.cfg = cfg
        seen: set[int] = set()
        self.params: list[torch.Tensor] = []
        for p in params:  # the tensors the optimizer updates, each once (tied weights)
            if p.requires_grad and id(p) not in seen:
                seen.add(id(p))
                self.params.append(p)
        self.anchor: list[torch.Tensor] = []  # this rank's shard of each parameter under FSDP
        self.anchor_step: int | None = None  # optimizer step at which the anchor was last set
        self.n_steps = 0  # interpolations done

    @property
    def active(self) -> bool:
        return self.cfg.active

    def _weights(self) -> list[torch.Tensor]:
        # Looked up at every use rather than kept: a load_state_dict may give a DTensor a new local tensor.
        return [local_tensor(p) for p in self.params]

    def allocate_anchor(self) -> list[torch.Tensor]:
        """The anchor tensors (uninitialised if new), e.g. for a sharded checkpoint to load into."""
        if not self.anchor:
            # Pageable, not page-locked, host memory: pinning would speed up a copy made once every k steps
            # (a small share already) at the price of up to 24 GB of unswappable memory per rank (6b, DDP),
            # which CUDA's host allocator also rounds up to powers of two.
            self.anchor = [torch.empty_like(w, device=self.cfg.anchor_device) for w in self._weights()]
        return self.anchor

    @torch.no_grad()
    def reset_anchor(self, step: int) -> None:
        """Set the anchor to the current weights (start of training, start of a task)."""
        if not self.active:
            return
        for a, w in zip(self.allocate_anchor(), self._weights()):
            a.copy_(w)
        self.anchor_step = step

    @torch.no_grad()
    def maybe_step(self, step: int) -> bool:
        """Interpolate if `k` optimizer steps have passed since the anchor was set; True if it did."""
        if not self.active:
            return False
        if self.anchor_step is None:  # no anchor yet (reset_anchor not called): start one here
            self.reset_anchor(step)
            return False
        if step - self.anchor_step < self.cfg.k:
            return False
        self._interpolate(step)
        return True

    @torch.no_grad()
    def step_partial_window(self, step: int) -> bool:
        """Interpolate now if any step (fewer than k) has passed since the anchor: the last, shorter window of a
        task (`reptile_at_task_end`). True if it did."""
        if not self.active or self.anchor_step is None or step <= self.anchor_step:
            return False
        self._interpolate(step)
        return True

    def _interpolate(self, step: int) -> None:
        eps = self.cfg.eps
        for a, w in zip(self.anchor, self._weights()):
            a_dev = a.to(w.device, non_blocking=False)  # [same shape as w]
            # theta <- anchor + eps * (theta - anchor) = theta + (1 - eps) * (anchor - theta): one pass.
            w.lerp_(a_dev, 1.0 - eps)
            a.copy_(w)  # the new anchor is the interpolated weights
        self.anchor_step = step
        self.n_steps += 1

    def state_dict(self) -> dict:
        """Anchor tensors (the live ones, not copies: a 6B anchor is 24 GB), anchor step, step count.

        A sharded checkpoint stores the anchor apart and passes `anchor=None` back to `load_state_dict`."""
        return {
            "anchor": list(self.anchor),
            "anchor_step": self.anchor_step,
            "n_steps": self.n_steps,
        }

    @torch.no_grad()
    def load_state_dict(self, state: dict) -> None:
        self.n_steps = int(state["n_steps"])
        saved = state["anchor"]
        if saved is None and self.active:  # restored apart (sharded checkpoint) into `allocate_anchor()`
            self.allocate_anchor()
            self.anchor_step = int(state["anchor_step"])
            return
        if not self.active or not saved:
            # Reptile off now, or it was off when saved: there is no anchor to restore
            # (an active Reptile then sets one at its next maybe_step).
            self.anchor, self.anchor_step = [], None
            return
        if len(saved) != len(self.params):
            raise ValueError(
                f"Reptile checkpoint has {len(saved)} anchor tensors but the model has {len(self.params)} "
                f"trainable tensors; resume with the same model"
            )
        for i, (a, s) in enumerate(zip(self.allocate_anchor(), saved)):
            if a.shape != s.shape:
                raise ValueError(f"Reptile anchor tensor {i} has shape {tuple(s.shape)}, the model's has "
                                 f"{tuple(a.shape)}; resume with the same model")
            a.copy_(s)
        self.anchor_step = int(state["anchor_step"])
