"""Summaries of interleaved benchmark rounds, shared by the scripts in benchmarks/: the round-robin
order of the variants, the median and "median (min-max)" of per-round values, a target's verdict,
and the progress log on stderr (stdout carries only the tables)."""

from __future__ import annotations

import statistics
import sys
from collections.abc import Sequence
from typing import TypeVar

T = TypeVar("T")


def rotated(items: Sequence[T], r: int) -> list[T]:
    """`items` starting at position r (mod len): over len(items) rounds every variant goes first once."""
    r %= len(items)
    return list(items[r:]) + list(items[:r])


def med(values: list[float]) -> float:
    return statistics.median(values)


def spread(values: list[float], fmt: str = "{:.1f}") -> str:
    """'median (min-max)' of per-round values."""
    return f"{fmt.format(med(values))} ({fmt.format(min(values))}-{fmt.format(max(values))})"


def verdict(value: float, target: float, higher_is_better: bool, fmt: str) -> str:
    ok = value >= target if higher_is_better else value <= target
    return "met" if ok else f"MISSED by {fmt.format(abs(value - target))}"


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)
