"""Reference storage (`buffer.storage="reference"`): the tokens of held blocks are read back from the data."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from mer.replay.refs import unpack_refs


@runtime_checkable
class BlockReader(Protocol):
    """What the buffer needs from the data side: tokens of blocks by id.

    Called from the prefetch thread when prefetch is on, so it must be safe to call concurrently
    with the trainer's own reads (reading from `np.memmap` shards is).
    """

    def read_blocks(self, task_index: int, block_ids: np.ndarray) -> np.ndarray:
        """Tokens [len(block_ids), block_len] (uint16 or uint32) of the given blocks of task `task_index`."""
        ...


def read_referenced(reader: BlockReader, refs: np.ndarray) -> tuple[np.ndarray, np.dtype]:
    """Tokens [m, block_len] of m > 0 references, in their order, one `read_blocks` call per task; and the dtype
    of the lowest task's blocks (what the buffer records as its token dtype)."""
    tasks, ids = unpack_refs(refs)  # [m], [m]
    out, first_dtype = None, None
    for task in np.unique(tasks):
        sel = np.flatnonzero(tasks == task)
        block = np.asarray(reader.read_blocks(int(task), ids[sel]))  # [len(sel), block_len]
        if block.ndim != 2 or block.shape[0] != sel.size:
            raise ValueError(f"BlockReader.read_blocks(task {int(task)}, {sel.size} ids) returned shape "
                             f"{block.shape}; expected [{sel.size}, block_len]")
        if out is None:
            out, first_dtype = np.empty((refs.shape[0], block.shape[1]), dtype=block.dtype), block.dtype
        elif block.shape[1] != out.shape[1]:
            raise ValueError(f"task {int(task)} has blocks of {block.shape[1]} tokens, other tasks "
                             f"{out.shape[1]}; all tasks must share one block length")
        elif block.dtype != out.dtype:
            out = out.astype(np.promote_types(out.dtype, block.dtype))
        out[sel] = block
    return out, first_dtype
