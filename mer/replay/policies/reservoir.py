"""`reservoir`: a uniform sample of `capacity` blocks of the stream (Vitter's Algorithm R, exact)."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from mer.replay.policy import NOTHING, Admission, Held, ReplayPolicy


class Reservoir(ReplayPolicy):
    """Stream item i (0-based, counted over all tasks) fills slot i while i < capacity, else replaces slot
    j ~ U{0..i} if j < capacity: after any number of items each one is held with the same probability.

    One draw from the admission generator per offered block past the first `capacity` (a vectorised loop: the
    draws and their order are those of the sequential algorithm).
    """

    name: ClassVar[str] = "reservoir"
    needs_capacity: ClassVar[bool] = True

    def admit(self, held: Held, task_index: int, k: int, rng: np.random.Generator) -> Admission:
        cap, i0 = self.cfg.capacity, held.n_seen
        n_fill = max(0, min(k, cap - i0))
        fill = np.arange(n_fill, dtype=np.int64)
        if n_fill == k:
            return Admission(fill, NOTHING, NOTHING)
        positions = np.arange(i0 + n_fill, i0 + k, dtype=np.int64)  # [r] stream positions
        j = rng.integers(0, positions + 1)  # [r] j_i ~ U{0, ..., i}
        admitted = np.flatnonzero(j < cap)  # indices into the rest, in stream order
        if admitted.size == 0:
            return Admission(fill, NOTHING, NOTHING)
        # A slot hit twice in one call keeps the later item (as in the sequential algorithm).
        _, last = np.unique(j[admitted][::-1], return_index=True)
        keep = admitted[admitted.size - 1 - last]  # indices into the rest, in slot order
        return Admission(fill, n_fill + keep, j[keep])
