"""The stored reference of tests/test_layout_reference.py: which run it pins and how a final state is reduced
to digests that can be kept in the repository (tests/fixtures/layout_reference/)."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path
from typing import Any

import torch
from fault_helpers import TINY

REFERENCE_DIR = Path(__file__).resolve().parent / "fixtures" / "layout_reference"

# The fault-injection suite's tiny run with replay by reference and Reptile (every 5 steps and at each task end),
# from relative folders so that a stored run directory resumes wherever it is copied.
REFERENCE_CONFIG = [*TINY, "alpha=0.25", "k=5", "eps=0.5", "reptile_at_task_end=true", "runs_dir=runs",
                    "data.data_dir=data"]

# What in state.pt measures the process rather than the training (as in fault_helpers.assert_same_run).
_VOLATILE_STATE = ("metrics_bytes", "metrics", "position.wall_time")


def reference_command() -> list[str]:
    return [sys.executable, "-m", "mer.run", *REFERENCE_CONFIG]


def _flatten(value: Any, where: str, out: dict[str, Any]) -> None:
    if where in _VOLATILE_STATE:
        return
    if isinstance(value, torch.Tensor):
        data = value.detach().cpu().contiguous()
        raw = data.reshape(-1).view(torch.uint8)  # the exact bits, whatever the dtype
        out[where] = f"{data.dtype} {list(data.shape)} {hashlib.sha256(raw.numpy().tobytes()).hexdigest()}"
    elif isinstance(value, dict):
        for key in value:
            _flatten(value[key], f"{where}.{key}" if where else str(key), out)
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            _flatten(item, f"{where}[{index}]", out)
    else:
        out[where] = value


def state_digest(state_path: Path) -> dict[str, Any]:
    """Every entry of a checkpoint's state, flattened to dotted keys: tensors as dtype, shape and the sha256 of
    their bytes; other values as they are."""
    state = torch.load(state_path, map_location="cpu", weights_only=True)
    out: dict[str, Any] = {}
    _flatten(state, "", out)
    return out
