"""Where training is (`Position`) and the random-number state a resume restores with it."""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch


@dataclass
class Position:
    """Where training is: global optimizer steps, the current task and steps done inside it."""

    step: int = 0
    task_index: int = 0
    task_step: int = 0
    wall_time: float = 0.0

    def state_dict(self) -> dict:
        return {"step": self.step, "task_index": self.task_index, "task_step": self.task_step,
                "wall_time": self.wall_time}

    def load_state_dict(self, state: dict) -> None:
        self.step, self.task_index = int(state["step"]), int(state["task_index"])
        self.task_step, self.wall_time = int(state["task_step"]), float(state["wall_time"])


def rng_state() -> dict:
    """torch's and Python's generators, as plain values that `torch.load(weights_only=True)` reads back."""
    return {"torch": torch.get_rng_state(), "python": list(random.getstate()[1]),
            "python_version": random.getstate()[0], "python_gauss": random.getstate()[2]}


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate((state["python_version"], tuple(state["python"]), state["python_gauss"]))
