"""The model as training needs it: built or loaded on its device, optionally checkpointed, sharded (FSDP),
compiled and wrapped in DDP, in that order, with its parameter counts taken before sharding."""

from __future__ import annotations

import inspect
import logging
from dataclasses import dataclass

import torch

from mer.config.run_config import RunConfig
from mer.model.llama import build_model, count_parameters
from mer.model.pretrained import load_pretrained
from mer.parallel.distributed import Distributed
from mer.parallel.sharding import check_parallel, shard_model

log = logging.getLogger(__name__)


@dataclass
class TrainingModel:
    """`model`: the fp32 module the optimizer, Reptile, checkpoints and evaluation see; `forward`: what the
    training forward/backward goes through (the same tensors, maybe compiled and DDP-wrapped)."""

    model: torch.nn.Module
    n_params: int
    n_params_nonembedding: int
    sharded: bool
    forward: torch.nn.Module | None = None
    ddp: torch.nn.Module | None = None


def build_training_model(cfg: RunConfig, dist: Distributed, vocab_size: int) -> TrainingModel:
    """The module before the optimizer exists (which must then hold the shards); `wrap_for_training` follows."""
    # Built on its device: a 6B model built on the host would take 24 GB of host memory on every rank.
    # From a pretrained model its loaded weights are the start (and so Reptile's first anchor).
    if cfg.model.init_from is not None:
        model = load_pretrained(cfg.model.init_from, dist.device)
    else:
        with torch.device(dist.device):
            model = build_model(cfg.model, vocab_size)
    if cfg.activation_checkpointing:
        # Non-reentrant checkpointing works with DDP and torch.compile (transformers 5 renamed the method).
        enable = getattr(model, "activation_checkpointing_enable", None)
        if enable is not None:
            enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    n_params, n_params_nonembedding = count_parameters(model)  # before sharding: whole tensors
    sharded = check_parallel(cfg.parallel, dist.device, dist.world_size, cfg.fsdp_on_cpu)
    if sharded:
        shard_model(model, dist.device, dist.world_size, cfg.precision)
    elif cfg.parallel == "fsdp":
        log.warning("parallel=fsdp with one process: nothing to shard over, the model is trained whole "
                    "(launch several processes with torchrun or srun to shard it)")
    return TrainingModel(model, n_params, n_params_nonembedding, sharded)


def wrap_for_training(built: TrainingModel, cfg: RunConfig, dist: Distributed) -> None:
    """Set `built.forward` (and `built.ddp`): torch.compile and DDP share `built.model`'s tensors."""
    built.forward = torch.compile(built.model) if cfg.compile else built.model
    if dist.enabled and not built.sharded:
        from torch.nn.parallel import DistributedDataParallel

        # Buffers (RoPE frequencies) are constants: no need to broadcast them every forward
        # (the argument was renamed in recent torch).
        no_buffer_sync = ({"forward_sync_buffers": False} if "forward_sync_buffers"
                          in inspect.signature(DistributedDataParallel).parameters else {"broadcast_buffers": False})
        device_ids = [dist.device.index] if dist.device.type == "cuda" else None
        built.ddp = DistributedDataParallel(built.forward, device_ids=device_ids, gradient_as_bucket_view=True,
                                            **no_buffer_sync)
        built.forward = built.ddp
