"""Which code produced each run, and a warning when runs combined in one comparison ran different code.

Every attempt at a run records its git commit, whether tracked files differed from it (dirty) and its command
line in summary.json's `provenance` (`mer.rundir.provenance`, docs/run_directory.md). Here that becomes columns of the
runs table, a per-run table for the report, and a warning: a fit or a replay-versus-scaling comparison over
runs of different code versions may show a change of the code, not of the settings. A code version is the
commit's first 12 hex digits, with `+dirty` when tracked files had uncommitted changes (two dirty runs of one
commit may still differ: nothing records what the changes were). Runs without provenance (older runs) are
the version `unknown`.
"""

from __future__ import annotations

import re
from typing import Any

import pandas as pd

UNKNOWN = "unknown"
SHORT = 12


def code_version(commit: Any, dirty: Any) -> str:
    """'0123456789ab', '0123456789ab+dirty', or UNKNOWN without a commit."""
    if not isinstance(commit, str) or not commit:
        return UNKNOWN
    return commit[:SHORT] + ("+dirty" if dirty is True else "")


_MODULE_FILE = re.compile(r"^\S*/((?:mer|analysis|sweeps)(?:/\w+)*)\.py(?=\s|$)")


def as_module_command(command: Any) -> Any:
    """`python -m mer.run ...` for a command recorded as `sys.argv`, whose first word is then the module's file
    (`/home/u/mer/mer/run.py -m ...`, as earlier runs recorded it): what the user typed, and can type again."""
    if not isinstance(command, str):
        return command
    return _MODULE_FILE.sub(lambda m: "python -m " + m.group(1).replace("/", "."), command, count=1)


def provenance_columns(summary: dict[str, Any] | None) -> dict[str, Any]:
    """The runs-table columns of a summary.json: `git_commit`, `git_dirty` and `command` of the last attempt,
    `attempts` (how many), and `code_versions`: every code version the attempts ran, in order, joined by ' -> '
    (one version for a run that never changed code)."""
    prov = (summary or {}).get("provenance")
    if not isinstance(prov, dict):
        return {"git_commit": None, "git_dirty": None, "command": None, "attempts": 0, "code_versions": UNKNOWN}
    attempts = [a for a in prov.get("attempts", []) if isinstance(a, dict)] or [prov]
    versions = list(dict.fromkeys(code_version(a.get("git_commit"), a.get("git_dirty")) for a in attempts))
    return {"git_commit": prov.get("git_commit"), "git_dirty": prov.get("git_dirty"),
            "command": as_module_command(prov.get("command")),
            "attempts": len(attempts), "code_versions": " -> ".join(versions)}


def version_groups(runs: pd.DataFrame) -> dict[str, list[str]]:
    """Code version(s) -> run ids, the largest group first (a table without the column: all UNKNOWN)."""
    if runs.empty:
        return {}
    keys = runs["code_versions"].fillna(UNKNOWN).astype(str) if "code_versions" in runs else [UNKNOWN] * len(runs)
    groups: dict[str, list[str]] = {}
    for key, run_id in zip(keys, runs["run_id"].astype(str), strict=True):
        groups.setdefault(key, []).append(run_id)
    return dict(sorted(groups.items(), key=lambda item: (-len(item[1]), item[0])))


def mixed_code_warning(runs: pd.DataFrame, what: str) -> str | None:
    """A warning naming the code versions when the runs combined in `what` come from more than one; None when they
    share one (or none records any)."""
    groups = version_groups(runs)
    if len(groups) <= 1:
        return None
    listed = "; ".join(f"{key}{' (no provenance in summary.json)' if key == UNKNOWN else ''}: {_names(ids)}"
                       for key, ids in groups.items())
    return (f"the runs of {what} come from {len(groups)} different code versions (git commit, +dirty: uncommitted "
            f"changes; a -> b: a run resumed by other code): {listed}. A difference between them may come from the "
            "code, not the settings. Fix: re-run the runs of the other versions from one commit, or check with "
            "`git diff <commit> <commit>` that the change cannot affect training or evaluation")


def provenance_table(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per run: its code version(s), attempts and the command of its last attempt."""
    cols = {"run": runs["run_id"].astype(str),
            "code version": runs.get("code_versions", pd.Series(UNKNOWN, index=runs.index)).fillna(UNKNOWN),
            "attempts": runs.get("attempts", pd.Series(0, index=runs.index)).fillna(0).astype(int),
            "command": runs.get("command", pd.Series(None, index=runs.index)).fillna("–")}
    return pd.DataFrame(cols).reset_index(drop=True)


def _names(ids: list[str], shown: int = 6) -> str:
    more = f", ... ({len(ids)} runs)" if len(ids) > shown else ""
    return ", ".join(ids[:shown]) + more
