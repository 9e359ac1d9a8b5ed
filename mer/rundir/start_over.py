"""`python -m mer.start_over RUN_DIR`: make a run directory start again from step 0, losing no record.

The fix every "cannot resume" message names (a damaged checkpoint, a metrics log that no longer matches it):
metrics.jsonl, summary.json, downstream.jsonl and models/ are renamed aside with a `.discarded-<UTC time>`
suffix (the analysis reads only the exact names, so it ignores them), the checkpoint (`checkpoint/`,
`checkpoint.old/`, `checkpoint.tmp/`) and the replay buffer's files (`buffer*/`) are removed, config.json and
config.yaml are kept. The same training command then trains the run from scratch (docs/run_directory.md).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

from mer.rundir.integrity import discarded_name  # no torch: the command starts in a moment
from mer.rundir.layout import CONFIG_JSON, METRICS_FILE, SUMMARY_FILE
from mer.rundir.lock import RunDirLocked, RunLock

KEPT_ASIDE = (METRICS_FILE, SUMMARY_FILE, "downstream.jsonl", "models")
REMOVED = ("checkpoint", "checkpoint.old", "checkpoint.tmp")


def start_over(run_dir: Path) -> list[str]:
    """Rename the run's results aside and remove its checkpoint; returns one line per thing done."""
    run_dir = Path(run_dir)
    if not (run_dir / CONFIG_JSON).is_file() and not (run_dir / METRICS_FILE).is_file():
        raise FileNotFoundError(f"{run_dir} is not a run directory (no config.json, no metrics.jsonl); give the "
                                "folder <runs_dir>/<run name> that the refusal named")
    done = []
    with RunLock(run_dir):  # never under a live run (mer.rundir.lock): RunDirLocked names it
        for name in KEPT_ASIDE:
            path = run_dir / name
            if path.exists():
                aside = discarded_name(path)
                os.rename(path, aside)
                done.append(f"kept {name} as {aside.name}")
        for path in [run_dir / n for n in REMOVED] + sorted(run_dir.glob("buffer*")):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
                done.append(f"removed {path.name}/")
            elif path.exists() or path.is_symlink():  # a file in a checkpoint's place (resume_check refuses it)
                path.unlink()
                done.append(f"removed {path.name}")
    return done


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mer.start_over", description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path, help="the run directory, <runs_dir>/<run name>")
    args = parser.parse_args(argv)
    try:
        done = start_over(args.run_dir)
    except (FileNotFoundError, RunDirLocked) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for line in done:
        print(line)
    print(f"{args.run_dir}: run the same training command again to train from step 0")
    return 0


if __name__ == "__main__":
    sys.exit(main())
