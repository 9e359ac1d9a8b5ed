"""Which run names are allowed: one plain folder name inside `runs_dir`, never a path that leaves it.

`run_name` becomes `<runs_dir>/<run_name>/`, and everything of the run (its lock, config, checkpoints, a
multirun's refusal record) is written there; `run_name=../../x` or `/tmp/x` would write outside the runs folder,
where neither the sweeps nor the analysis look and where another run's files may be.
"""

from __future__ import annotations

FORBIDDEN_CHARACTERS = ("/", "\\", "\x00")
"""Path separators (POSIX and Windows) and NUL, which no file name can hold."""


def run_name_problem(name: str) -> str | None:
    """Why `name` cannot be a run directory's name inside the runs folder, or None when it can."""
    if not isinstance(name, str) or not name.strip():
        return f"run_name={name!r} must be a non-empty folder name"
    if name in (".", ".."):
        return f"run_name={name!r} would not name a folder inside runs_dir; choose a plain name such as run1"
    for character in FORBIDDEN_CHARACTERS:
        if character in name:
            return (f"run_name={name!r} holds {character!r}: a run name is one folder inside runs_dir, never a path "
                    "(set runs_dir=<folder> to write elsewhere, and run_name=<plain name>)")
    return None
