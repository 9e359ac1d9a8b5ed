"""FSDP for the big sizes: PyTorch's `fully_shard` (FSDP2) over all ranks, and its sharded checkpoints.

With `parallel=fsdp` every rank holds 1/W of each parameter, of its gradient, of the AdamW moments
and of the Reptile anchor; a transformer block's full weights exist only while that block runs
(all-gathered before its forward and backward, gradients reduce-scattered after). Each decoder
block is its own FSDP unit and the root (embeddings, final norm, head) another, the usual split.

Parameters are DTensors sharded on dim 0. The optimizer updates the local shards in place, and so
does Reptile (`local_tensor`), so the interpolation `theta <- anchor + eps*(theta - anchor)` is
elementwise on each rank's shard: no rank ever holds a full copy of the weights or of the anchor.

Checkpoints are torch.distributed.checkpoint (DCP) directories, written by all ranks at once: model
and optimizer state as DTensors (each rank writes its shards), the anchor shards under per-rank keys
(the anchor may live on the CPU, away from the parameters' device, so it is kept out of the DTensor
world). They resume on the same world size, like every checkpoint of this toolkit (the data order
and the buffer are global, but the anchor shards are per rank).

With bf16 the all-gathered weights are cast to bf16 (`MixedPrecisionPolicy`, half the traffic) and
gradients reduced in fp32; the sharded parameters, and so the optimizer and Reptile, stay fp32.
"""

from __future__ import annotations

from pathlib import Path

import torch

PARALLEL_CHOICES = ("ddp", "fsdp")
SHARDED_DIR = "sharded"
"""Subdirectory of a checkpoint holding the DCP files of an FSDP run."""


def check_parallel(parallel: str, device: torch.device, world_size: int, fsdp_on_cpu: bool) -> bool:
    """Whether this job shards the model; raises, before any work, on a combination that cannot work.

    One process never shards (there is nothing to shard over). FSDP on CPU is refused unless asked
    for explicitly: CPU ranks share one machine's memory, so sharding saves nothing and only adds
    communication; `fsdp_on_cpu=true` exists to check the sharded path (and its checkpoints) on a
    laptop or in CI with the gloo backend.
    """
    if parallel != "fsdp" or world_size == 1:  # the value itself is checked by RunConfig
        return False
    if device.type == "cpu" and not fsdp_on_cpu:
        raise ValueError("parallel=fsdp shards the model over GPUs, but this job runs on the CPU: use parallel=ddp "
                         "on CPU (or device=cuda on a GPU node); to check the sharded code path on CPU anyway, add "
                         "fsdp_on_cpu=true")
    return True


def shard_model(model: torch.nn.Module, device: torch.device, world_size: int, precision: str) -> None:
    """Apply `fully_shard` in place: each decoder block, then the root module (a LlamaForCausalLM)."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    mesh = init_device_mesh(device.type, (world_size,))
    policy = (MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
              if precision == "bf16" else MixedPrecisionPolicy())
    layers = getattr(getattr(model, "model", None), "layers", None)
    if layers is None:
        raise TypeError(f"{type(model).__name__} has no .model.layers; FSDP here shards Llama-style decoders")
    for layer in layers:
        fully_shard(layer, mesh=mesh, mp_policy=policy)
    fully_shard(model, mesh=mesh, mp_policy=policy)


def local_tensor(t: torch.Tensor) -> torch.Tensor:
    """This rank's shard of a DTensor parameter (a view: in-place updates reach the parameter); a plain
    tensor itself."""
    to_local = getattr(t, "to_local", None)
    return to_local() if to_local is not None else t


def _sharded_state(model, optimizer, anchor: list[torch.Tensor], rank: int) -> dict:
    from torch.distributed.checkpoint.state_dict import get_state_dict

    # get_state_dict also creates the optimizer's state (moments, step) when none exists yet, so that a
    # fresh process has tensors for dcp.load to fill.
    model_state, optim_state = get_state_dict(model, optimizer)
    return {"model": model_state, "optimizer": optim_state,
            "reptile_anchor": {f"rank{rank}.{i}": a for i, a in enumerate(anchor)}}


def save_sharded(directory: Path, model, optimizer, anchor: list[torch.Tensor], rank: int) -> None:
    """Write model, optimizer and anchor shards of every rank to `directory` (collective: all ranks call it)."""
    import torch.distributed.checkpoint as dcp

    dcp.save(_sharded_state(model, optimizer, anchor, rank), checkpoint_id=str(directory))


def load_sharded(directory: Path, model, optimizer, anchor: list[torch.Tensor], rank: int) -> None:
    """Read what `save_sharded` wrote into the live model, optimizer and anchor tensors (collective)."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import set_state_dict

    if not (directory / ".metadata").is_file():
        from mer.rundir.integrity import RunDirectoryDamaged, start_over_hint

        raise RunDirectoryDamaged(f"{directory} is not a complete sharded checkpoint (no .metadata); "
                                  f"{start_over_hint(directory.parent.parent)}")
    state = _sharded_state(model, optimizer, anchor, rank)
    dcp.load(state, checkpoint_id=str(directory))  # in place: the anchor tensors are filled directly
    set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optimizer"])
