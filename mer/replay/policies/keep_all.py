"""`all`: keep every block offered (the paper's setting: replay from everything seen so far)."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from mer.replay.policy import NOTHING, Admission, Held, ReplayPolicy


class KeepAll(ReplayPolicy):
    """Appends every offered block; never replaces one, so slots stay in the order blocks were added."""

    name: ClassVar[str] = "all"
    append_only: ClassVar[bool] = True

    def admit(self, held: Held, task_index: int, k: int, rng: np.random.Generator) -> Admission:
        return Admission(np.arange(k, dtype=np.int64), NOTHING, NOTHING)
