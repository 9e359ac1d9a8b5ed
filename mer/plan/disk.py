"""Disk a run writes: its checkpoint, its replay buffer and its exported models (docs/plan.md).

- checkpoint (`checkpoint/state.pt`): the fp32 weights (4N bytes), AdamW's two moments (8N), the Reptile
  anchor when Reptile is on (4N) and the replay buffer's references (8 bytes per block it holds). While a
  new one is written the previous one stays until the rename, so the peak is twice that.
- replay buffer: references only with `buffer.storage=reference` (they are in the checkpoint); with
  `copy`, an append-only token file of (seq_len + 1) tokens per block added, uint16 or uint32 by the
  vocabulary size (an upper bound for a reservoir, which rewrites fewer rows).
- exports (`export_each_task=true`): one fp32 safetensors copy of the model (4N) per task.
The metrics log and summaries (kilobytes to a few megabytes) are left out.
"""

from __future__ import annotations

from dataclasses import dataclass

from mer.config.run_config import RunConfig
from mer.plan.counts import RunCounts
from mer.replay.policies import POLICIES

REFERENCE_BYTES = 8


@dataclass(frozen=True)
class DiskEstimate:
    checkpoint: int
    """Bytes of one checkpoint."""
    replay_buffer: int
    """Bytes of the buffer's own token file (storage=copy); 0 with references (counted in the checkpoint)."""
    exports: int

    @property
    def peak(self) -> int:
        """Bytes on disk at most: two checkpoints (during a write), the buffer and the exports."""
        return 2 * self.checkpoint + self.replay_buffer + self.exports


def estimate_disk(cfg: RunConfig, counts: RunCounts, n_params: int, vocab_size: int) -> DiskEstimate:
    reptile_on = bool(cfg.k) and cfg.eps < 1
    blocks_added = counts.rows_new if cfg.n_replay_per_step else 0  # with alpha=0 nothing is stored
    capped = POLICIES[cfg.buffer.policy].needs_capacity
    held = min(blocks_added, cfg.buffer.capacity or 0) if capped else blocks_added
    references = held * REFERENCE_BYTES * (2 if cfg.buffer.storage == "copy" else 1)  # copy: refs and rows
    checkpoint = 4 * n_params * (3 + (1 if reptile_on else 0)) + references
    token_bytes = 2 if vocab_size <= 2**16 else 4
    buffer = blocks_added * (cfg.model.seq_len + 1) * token_bytes if cfg.buffer.storage == "copy" else 0
    exports = 4 * n_params * len(counts.tasks) if cfg.export_each_task else 0
    return DiskEstimate(checkpoint, buffer, exports)
