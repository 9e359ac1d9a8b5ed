"""Where this process runs: its rank in a data-parallel job, its device, and the few collectives the
trainer needs (mean of a scalar, "does any rank want to stop", barrier).

A job is several processes when it is launched by torchrun (RANK / WORLD_SIZE / LOCAL_RANK, with
MASTER_ADDR / MASTER_PORT set by torchrun) or by `srun` with several tasks (SLURM_PROCID /
SLURM_NTASKS / SLURM_LOCALID, MASTER_ADDR / MASTER_PORT exported by the job script). Anything else
is one process and touches no `torch.distributed` state at all, so the single-process path is the
plain PyTorch loop it always was.

Backend: NCCL when the device is a GPU, gloo on CPU (what the CPU tests use).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import torch
import torch.distributed as dist

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class WorldInfo:
    """Rank, world size and node-local rank of this process, and which launcher said so."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    launcher: str = "none"
    """"torchrun", "slurm" or "none" (a single process)."""


def world_from_env(env: dict[str, str] | None = None) -> WorldInfo:
    """Read the launcher's variables: torchrun's first, then Slurm's (`srun` with several tasks).

    Under Slurm several tasks need MASTER_ADDR and MASTER_PORT (the job script exports them, see
    docs/scaling.md): without them this is most likely a plain `python` call in a batch script of
    several tasks, which would wait forever for ranks that never start, so it is refused.
    """
    env = os.environ if env is None else env
    if "RANK" in env and "WORLD_SIZE" in env:
        info = WorldInfo(int(env["RANK"]), int(env["WORLD_SIZE"]), int(env.get("LOCAL_RANK", 0)), "torchrun")
    elif int(env.get("SLURM_NTASKS", env.get("SLURM_NPROCS", "1")) or 1) > 1 and "SLURM_PROCID" in env:
        world = int(env.get("SLURM_NTASKS", env.get("SLURM_NPROCS")))
        if not env.get("MASTER_ADDR") or not env.get("MASTER_PORT"):
            raise RuntimeError(
                f"Slurm job with SLURM_NTASKS={world} but MASTER_ADDR/MASTER_PORT are not set. Launch one task per GPU "
                "with `srun` after `export MASTER_ADDR=$(scontrol show hostnames $SLURM_JOB_NODELIST | head -n1) "
                "MASTER_PORT=29500` (docs/scaling.md), or run single-process jobs with --ntasks=1"
            )
        info = WorldInfo(int(env["SLURM_PROCID"]), world, int(env.get("SLURM_LOCALID", 0)), "slurm")
    else:
        return WorldInfo()
    if not 0 <= info.rank < info.world_size or info.world_size < 1 or info.local_rank < 0:
        raise RuntimeError(f"inconsistent launcher variables: rank {info.rank}, world size {info.world_size}, "
                           f"local rank {info.local_rank} ({info.launcher})")
    return info


def resolve_device(requested: str, local_rank: int = 0, world_size: int = 1) -> torch.device:
    """The device of this process: `cuda:<local rank>` on a GPU node (modulo the visible GPUs, so
    `srun --gpus-per-task=1`, where every task sees one GPU as cuda:0, works too), else the CPU."""
    if requested == "auto":
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise RuntimeError(f"device={requested!r} but no CUDA GPU is visible to this process; use device=cpu or auto")
    if requested != "cuda":  # an explicit cuda:N
        if world_size > 1:
            raise ValueError(f"device={requested!r} with {world_size} processes: use device=cuda (or auto), "
                             "each rank then takes the GPU of its local rank")
        return torch.device(requested)
    return torch.device("cuda", local_rank % torch.cuda.device_count())


def check_precision(precision: str, device: torch.device) -> None:
    """bf16 autocast needs a GPU that computes in bf16 (compute capability 8.0+: A100, H100, L40S...).

    CPU runs are refused rather than silently slow or silently fp32: CPU training here is for tests
    and small models, and a CPU bf16 run would not be comparable with its GPU twin anyway.
    """
    if precision != "bf16":
        return
    if device.type != "cuda":
        raise ValueError(f"precision=bf16 needs a CUDA GPU with bf16 support; this run is on {device}: "
                         "use precision=fp32 (the default)")
    with torch.cuda.device(device):
        native_bf16 = torch.cuda.is_bf16_supported(including_emulation=False)
    if not native_bf16:
        name = torch.cuda.get_device_name(device)
        raise ValueError(f"precision=bf16: {name} has no native bf16 (needs compute capability 8.0+, e.g. "
                         "A100/H100/L40S); use precision=fp32")


@dataclass
class Distributed:
    """This process's place in the job and the collectives the trainer uses.

    With one process every collective is the identity and no process group exists.
    """

    info: WorldInfo = field(default_factory=WorldInfo)
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    owns_group: bool = False
    """Whether `setup` created the process group (and `teardown` should destroy it)."""

    @property
    def rank(self) -> int:
        return self.info.rank

    @property
    def world_size(self) -> int:
        return self.info.world_size

    @property
    def is_main(self) -> bool:
        """Rank 0: the only rank that writes the run directory (config, metrics, summary, checkpoints)."""
        return self.info.rank == 0

    @property
    def enabled(self) -> bool:
        return self.info.world_size > 1

    def barrier(self) -> None:
        if not self.enabled:
            return
        if self.device.type == "cuda":  # NCCL's barrier is told the device instead of guessing one
            dist.barrier(device_ids=[self.device.index])
        else:
            dist.barrier()

    def mean(self, value: torch.Tensor) -> torch.Tensor:
        """Mean of a tensor over ranks (a new tensor; with one process the input itself)."""
        if not self.enabled:
            return value
        out = value.detach().clone()
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        return out / self.world_size

    def sum(self, value: torch.Tensor) -> torch.Tensor:
        """Sum of a tensor over ranks (a new tensor; with one process the input itself)."""
        if not self.enabled:
            return value
        out = value.detach().clone()
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        return out

    def any(self, flag: bool) -> bool:
        """True on every rank if it is True on any rank (so that all ranks take the same branch)."""
        if not self.enabled:
            return flag
        t = torch.tensor([1.0 if flag else 0.0], device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item() > 0)

    def main_first(self, fn: Callable[[], T]) -> T:
        """Run `fn` on rank 0, then on the others (e.g. preparing a data cache the others then read).

        If rank 0 fails, the others raise too instead of waiting at a barrier for ever.
        """
        if not self.enabled:
            return fn()
        if self.is_main:
            try:
                result = fn()
            except BaseException:
                self.any(True)  # tell the others, who wait below
                raise
            self.any(False)
            return result
        if self.any(False):
            raise RuntimeError("rank 0 failed (see its error); stopping this rank too")
        return fn()


def setup(requested_device: str = "auto", precision: str = "fp32") -> Distributed:
    """Find this process's rank and device, check the precision, and join the process group if any.

    Idempotent: a process group made by the caller is reused (and left for the caller to destroy).
    """
    info = world_from_env()
    device = resolve_device(requested_device, info.local_rank, info.world_size)
    if device.type == "cuda":
        torch.cuda.set_device(device)  # before anything allocates on (or asks about) "the current GPU"
    check_precision(precision, device)
    if info.world_size == 1:
        return Distributed(info, device)
    owns = False
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        kwargs = {"device_id": device} if device.type == "cuda" else {}
        dist.init_process_group(backend, rank=info.rank, world_size=info.world_size, **kwargs)
        owns = True
    elif dist.get_world_size() != info.world_size or dist.get_rank() != info.rank:
        raise RuntimeError(f"a process group of {dist.get_world_size()} ranks exists, the launcher says "
                           f"{info.world_size}")
    if info.rank != 0:  # one voice in the logs: rank 0 reports, the others only warn
        logging.getLogger("mer").setLevel(logging.WARNING)
    log.info("rank %d of %d (%s), device %s", info.rank, info.world_size, info.launcher, device)
    return Distributed(info, device, owns)


def teardown(ctx: Distributed, clean: bool = True) -> None:
    """Leave the process group this module made. After a clean finish first wait for every rank (so no
    rank leaves while rank 0 still writes); after an error do not wait for ranks that may never come."""
    if ctx.owns_group and dist.is_initialized():
        try:
            if clean:
                ctx.barrier()
        finally:
            dist.destroy_process_group()
