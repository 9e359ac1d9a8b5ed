"""Refuse to fit or compare losses of runs that were not scored on the same evaluation.

A run's summary.json carries `eval_fingerprint_id`: a digest of the tokenizer, the evaluation windows
(eval.context, eval.stride) and the held-out token spans (data.eval_tokens of each task's validation
split) its losses were measured on (`mer.evaluation.windows`). Losses of runs with different fingerprints are
different measurements: a power law through them, or a multiplier between them, would mix tokens and
contexts with model quality. Runs from before the fingerprint existed form the group "unknown", which
cannot be combined with runs that have one either (nothing says what they were scored on).
"""

from __future__ import annotations

from typing import Any

import pandas as pd

COLUMN = "eval_fingerprint"
UNKNOWN = "unknown"
FIX = ("Fix: evaluate every run with the same eval.context, eval.stride and data.eval_tokens, on the same data and "
       "tokenizer (set eval.context to the smallest model.seq_len of the sweep), and re-run the runs of the other "
       "group(s) (runs without a fingerprint predate it: re-run them); or analyse each group on its own")


class MixedEvaluations(ValueError):
    """The runs to combine were scored on different evaluations (their fingerprints differ)."""

    def __init__(self, what: str, groups: dict[str, list[str]]) -> None:
        self.groups = groups
        listed = "; ".join(f"fingerprint {key}{' (no eval_fingerprint_id in summary.json)' if key == UNKNOWN else ''}: "
                           f"{_names(ids)}" for key, ids in groups.items())
        super().__init__(f"refused to {what}: these runs were not scored on the same held-out tokens and windows, so "
                         f"their losses are not comparable ({len(groups)} evaluation fingerprints): {listed}. {FIX}")


def fingerprint_of(value: Any) -> str:
    """A runs-table cell -> the fingerprint id, or UNKNOWN for a run without one (None, NaN, empty)."""
    return value if isinstance(value, str) and value else UNKNOWN


def fingerprint_groups(runs: pd.DataFrame) -> dict[str, list[str]]:
    """Fingerprint id -> run ids, the largest group first; a table without the column is one UNKNOWN group."""
    ids = runs["run_id"].astype(str).tolist()
    keys = [fingerprint_of(v) for v in runs[COLUMN]] if COLUMN in runs else [UNKNOWN] * len(ids)
    groups: dict[str, list[str]] = {}
    for key, run_id in zip(keys, ids, strict=True):
        groups.setdefault(key, []).append(run_id)
    return dict(sorted(groups.items(), key=lambda item: (-len(item[1]), item[0])))


def check_same_evaluation(runs: pd.DataFrame, what: str) -> str:
    """The one fingerprint all `runs` share; raises MixedEvaluations naming the groups when they differ."""
    groups = fingerprint_groups(runs)
    if len(groups) > 1:
        raise MixedEvaluations(what, groups)
    return next(iter(groups), UNKNOWN)


def _names(ids: list[str], shown: int = 6) -> str:
    more = f", ... ({len(ids)} runs)" if len(ids) > shown else ""
    return ", ".join(ids[:shown]) + more
