"""The rows one optimizer step trains on this rank: new blocks of the current task and replayed ones.

Every rank builds the same GLOBAL plan of the step's B rows (block ids only): the new ids from the shared
stream position, then the replayed ones from the replay sampler, seeded identically on every rank and fed
the same global block ids, so all buffers hold the same blocks and draw the same rows. Rank r then reads
rows [r*B/W, (r+1)*B/W) of that plan.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from mer.config.run_config import RunConfig
from mer.parallel.distributed import Distributed
from mer.replay.buffer import ReplayBuffer


@dataclass
class StepBatch:
    tokens: torch.Tensor  # [B/W, T+1] on the device: this rank's rows, new ones first
    n_new: int  # new blocks in the global batch
    n_replay: int  # replayed blocks in the global batch


def assemble_batch(cfg: RunConfig, buffer: ReplayBuffer, task, task_index: int, dist: Distributed) -> StepBatch:
    """Draw the global plan, read this rank's rows and add the step's new blocks to the buffer."""
    batch_size, rows = cfg.optim.batch_size, cfg.optim.batch_size // dist.world_size
    lo, hi = dist.rank * rows, (dist.rank + 1) * rows
    window = (lo, hi, batch_size)
    replay_refs, replay_tokens = buffer.sample(cfg.n_replay_per_step, task_index, window)  # [m], [<= m, T+1]
    n_short = cfg.n_replay_per_step - len(replay_refs)  # buffer still (almost) empty: fill with new data
    new_ids = task.stream.next_block_ids(cfg.n_new_per_step + n_short)  # [B - m]
    # Copied storage needs every new block's tokens anyway: read them once and slice this rank's rows.
    all_new = task.stream.read(new_ids) if cfg.buffer.storage == "copy" else None  # [B - m, T+1]
    mine = all_new[lo:hi] if all_new is not None else task.stream.read(new_ids[lo:hi])
    blocks = np.concatenate([p for p in (mine, replay_tokens) if len(p)])  # [B/W, T+1]
    batch = torch.from_numpy(blocks.astype(np.int64))  # [B/W, T+1]
    if dist.device.type == "cuda":  # page-locked host memory lets the copy overlap with compute
        batch = batch.pin_memory()
    batch = batch.to(dist.device, non_blocking=True)
    # Every rank adds the GLOBAL new ids, so the buffers stay identical. Added (and the next replay rows
    # prefetched) before the forward pass so that the background read overlaps with compute. With
    # alpha=0 nothing is ever replayed, so nothing is stored (at paper scale that is GBs per rank).
    if cfg.n_replay_per_step:
        buffer.add(task_index, new_ids, all_new)
        if cfg.buffer.prefetch:
            buffer.prefetch(cfg.n_replay_per_step, task_index, window)
    return StepBatch(batch, len(new_ids), len(replay_refs))
