"""The one check that the global batch splits over the data-parallel ranks."""

from __future__ import annotations

from mer.config.run_config import RunConfig


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
