"""What the held-out evaluation scores: sliding windows over a fixed token span, and its fingerprint.

The held-out set of a task is a fixed span of token ids (the first `data.eval_tokens` tokens of its
validation split, or all of it), independent of the model: models with different `seq_len` are scored
on the same targets, only through windows of `eval.context` tokens. Everything here is numpy and
hashlib only (no torch), so it can be tested, and read by the analysis, without a model.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class WindowPlan:
    """The windows that score every target of an n-token span exactly once.

    Window w reads the tokens `starts[w] .. starts[w] + length` (inputs `length` tokens, targets the
    same shifted by one) and scores only its targets at window offsets `first_scored[w] .. length - 1`
    (window offset j predicts span position `starts[w] + j + 1`).
    """

    n_tokens: int
    """Tokens in the span (targets are positions 1 .. n_tokens - 1)."""
    length: int
    """Input tokens per window: `context`, or n_tokens - 1 for a span that does not fill one window."""
    starts: np.ndarray
    """[n_windows] int64: span position of each window's first input token."""
    first_scored: np.ndarray
    """[n_windows] int64: window offset of each window's first scored target (0 = all are scored)."""

    @property
    def n_windows(self) -> int:
        return len(self.starts)

    @property
    def n_scored(self) -> np.ndarray:
        """[n_windows] int64: targets each window scores (they add up to n_tokens - 1)."""
        return self.length - self.first_scored

    def positions(self, windows: slice | np.ndarray) -> np.ndarray:
        """[b, length + 1] span positions of the selected windows (inputs and targets, gather indices)."""
        return self.starts[windows, None] + np.arange(self.length + 1)


def plan_windows(n_tokens: int, context: int, stride: int) -> WindowPlan:
    """Windows of `context` inputs, `stride` apart, that score every target of the span exactly once.

    Targets are span positions 1 .. n-1 (position 0 is never a target: nothing precedes it). The rule:

    - the first window starts at 0 and scores all of its `context` targets; its first targets are
      predicted from few tokens (position 1 from position 0 alone), as at the start of any document;
    - each next window starts `stride` tokens later and scores only its last `stride` targets: its
      first `context - stride` tokens are context only (their targets were scored before), so every
      target after the first window is predicted from at least `context - stride` earlier tokens
      (stride = context: disjoint windows, no overlap; stride = 1: the full context for every target);
    - where the next start would run past the span, a final window is aligned to END exactly at the span's
      end and scores only the targets no window scored yet (fewer than `stride`);
    - a span of at most `context + 1` tokens is one short window of n - 1 inputs that scores everything.

    Windows are all `length` long, so they batch without padding; the loss over the scored targets,
    summed and divided by n - 1, is the mean token loss of the span.
    """
    if n_tokens < 2:
        raise ValueError(f"a span of {n_tokens} token(s) has no target; it needs at least 2 tokens")
    if context < 1 or not 1 <= stride <= context:
        raise ValueError(f"context={context} and stride={stride}: need context >= 1 and 1 <= stride <= context")
    n_targets = n_tokens - 1
    if n_targets <= context:
        return WindowPlan(n_tokens, n_targets, np.zeros(1, dtype=np.int64), np.zeros(1, dtype=np.int64))
    last = n_targets - context  # start of a window ending exactly at the span's end
    starts = np.arange(0, last + 1, stride, dtype=np.int64)
    first = np.full(len(starts), context - stride, dtype=np.int64)
    first[0] = 0
    if starts[-1] != last:  # the aligned final window scores what the stride left over
        first = np.append(first, context - (last - starts[-1]))
        starts = np.append(starts, last)
    return WindowPlan(n_tokens, context, starts, first)


# ---------------------------------------------------------------- fingerprint
FINGERPRINT_ID_HEX = 16


def span_sha256(span: np.ndarray) -> str:
    """sha256 of the span's token ids as int64 little-endian bytes (the same digest whatever the shard dtype)."""
    return hashlib.sha256(np.ascontiguousarray(span, dtype="<i8").tobytes()).hexdigest()


def eval_fingerprint(tokenizer_hash: str, context: int, stride: int, spans: Mapping[str, np.ndarray]) -> dict:
    """What two runs must share for their losses to be comparable: the tokenizer, the windows and the tokens.

    `spans` maps each task name to its held-out span, which is always the start of the task's
    validation split (`split: "val"`, `start: 0`).
    """
    return {
        "tokenizer_hash": tokenizer_hash,
        "context": int(context),
        "stride": int(stride),
        "tasks": {name: {"split": "val", "start": 0, "n_tokens": int(len(span)), "sha256": span_sha256(span)}
                  for name, span in spans.items()},
    }


def fingerprint_id(fingerprint: dict) -> str:
    """A short hex digest of the fingerprint (sha256 of its sorted-keys JSON), for tables and comparisons."""
    text = json.dumps(fingerprint, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:FINGERPRINT_ID_HEX]
