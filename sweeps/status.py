"""`python -m sweeps.status <sweep dir>`: what a sweep has done and what it still owes.

Lists every run directory under the sweep dir with its state (completed / running / stopped / interrupted /
failed / refused, with the last line of the error, the signal or the reason of the refusal; docs/run_directory.md)
and its progress (last step in metrics.jsonl, time since the last write), plus the runs the sweep expects whose
directory does not exist yet (pending). `running` means a live process holds the run's lock; `interrupted` is a
run that says running but whose process is gone (killed, a node lost): launching it again resumes it.

- a grid (hydra/sweeper=mer_grid, or Hydra's basic sweeper): the jobs are rebuilt from the sweep's
  multirun.yaml exactly as the sweeper builds them (`hydra.sweeper.params` + the command-line sweeps), each
  named as mer.run names it;
- an Optuna sweep (hydra/sweeper=mer_optuna): the study is read from its storage; pending is
  n_trials minus the finished trials, and the best trial / Pareto front is shown.

Given a folder that holds several sweeps (e.g. `runs/` with `runs/paper_grid/` and `runs/optuna_mer/`, each
with its multirun.yaml), it shows one section per sweep (and one for loose run directories in the folder
itself), then the totals. A folder with no run directory and no sweep at all is an error (exit code 2), as is
a path that is not a folder.

`--json` prints the same as one JSON object.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from mer.rundir.layout import effective_error, effective_status
from mer.rundir.refusal import headline
from mer.rundir.status import REPORTED_STATUSES
from sweeps.rundirs import read_summary

STATES = (*REPORTED_STATUSES, "pending")
# Sweepers whose jobs are the product of their parameters (the grid can be rebuilt from multirun.yaml).
GRID_SWEEPERS = ("BasicSweeper", "MerGridSweeper")


class NothingToShow(LookupError):
    """The folder holds no run directory and no sweep."""


def _last_record(path: Path) -> dict[str, Any] | None:
    """The last JSON line of metrics.jsonl without reading the whole file."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, 2)
            size = handle.tell()
            handle.seek(max(0, size - 65536))
            lines = [line for line in handle.read().splitlines() if line.strip()]
        return json.loads(lines[-1]) if lines else None
    except (FileNotFoundError, json.JSONDecodeError, IndexError):
        return None


def _run_row(run_dir: Path, now: float) -> dict[str, Any]:
    summary = read_summary(run_dir) or {}
    status = effective_status(run_dir, summary)
    row: dict[str, Any] = {"run": run_dir.name, "status": status, "step": None, "idle_s": None, "error": None,
                           "retained_loss": None, "flops_train": None}
    last = _last_record(run_dir / "metrics.jsonl")
    if last is not None:
        row["step"] = last.get("step")
    newest = max((p.stat().st_mtime for p in (run_dir / "metrics.jsonl", run_dir / "summary.json") if p.exists()),
                 default=None)
    if newest is not None:
        row["idle_s"] = round(now - newest, 1)
    if status in ("failed", "refused", "stopped"):  # the reason (or the signal), as one line
        error = effective_error(run_dir, summary) or ""
        row["error"] = error.strip().splitlines()[-1] if error.strip() else "(no error recorded)"
    elif status == "interrupted":
        row["error"] = "its process is gone without a word (killed?); launch it again to resume"
    if status == "completed":
        row["retained_loss"] = (summary.get("metrics") or {}).get("retained_loss")
        row["flops_train"] = (summary.get("totals") or {}).get("flops_train")
    if status == "completed" and summary.get("totals"):
        row["step"] = summary["totals"].get("steps", row["step"])
    return row


def pending_row(name: str) -> dict[str, Any]:
    return {"run": name, "status": "pending", "step": None, "idle_s": None, "error": None,
            "retained_loss": None, "flops_train": None}


def count_states(rows: Sequence[dict[str, Any]]) -> dict[str, int]:
    counts = {state: sum(row["status"] == state for row in rows) for state in STATES}
    others = sum(row["status"] not in STATES for row in rows)
    if others:
        counts["unknown"] = others
    return counts


def _is_run_dir(path: Path) -> bool:
    return path.is_dir() and any((path / name).exists() for name in ("summary.json", "config.json", "metrics.jsonl"))


def expected_grid_runs(multirun: Any) -> list[str]:
    """Run names a basic-sweeper grid will produce (as BasicSweeper splits them and mer.run names them)."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from mer.rundir.layout import run_name_from_overrides

    params = multirun.hydra.sweeper.get("params") or {}
    lines = [f"{key}={value}" for key, value in params.items()] + list(multirun.hydra.overrides.task)
    overrides = OverridesParser.create().parse_overrides(lines)
    jobs = [job for batch in BasicSweeper.split_arguments(overrides, None) for job in batch]
    fixed_name = multirun.get("run_name")
    return sorted({fixed_name or run_name_from_overrides(job) for job in jobs})


def optuna_report(sweep_dir: Path, sweeper: Any) -> dict[str, Any]:
    """Trial counts and the best trial(s) of the sweep's study, read from its storage."""
    import optuna
    from optuna.trial import TrialState

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    spec = sweeper.get("storage")
    if spec in (None, "", "sqlite"):
        path = sweep_dir / "optuna.db"
        if not path.exists():
            return {"study": sweeper.study_name, "error": f"no study storage at {path} yet"}
        storage: Any = f"sqlite:///{path.resolve()}"
    elif spec == "journal" or str(spec).startswith("journal:"):
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        path = Path(spec[len("journal:"):]) if str(spec).startswith("journal:") else sweep_dir / "optuna.journal"
        if not path.exists():
            return {"study": sweeper.study_name, "error": f"no study storage at {path} yet"}
        storage = JournalStorage(JournalFileBackend(str(path)))
    else:
        storage = spec
    try:
        study = optuna.load_study(study_name=sweeper.study_name, storage=storage)
    except KeyError:
        return {"study": sweeper.study_name, "error": "the study is not in its storage yet"}
    trials = study.get_trials(deepcopy=False)
    counts = {state.name.lower(): sum(t.state == state for t in trials) for state in TrialState}
    retried = {t.user_attrs.get("retry_of") for t in trials}
    done = sum(1 for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)
               or (t.state == TrialState.FAIL and t.number not in retried))
    report: dict[str, Any] = {"study": sweeper.study_name, "trials": {k: v for k, v in counts.items() if v},
                              "n_trials": int(sweeper.n_trials), "pending": max(0, int(sweeper.n_trials) - done)}
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    failed = [t for t in trials if t.state == TrialState.FAIL and t.user_attrs.get("fail_reason")]
    report["failed_trials"] = [{"number": t.number, "reason": t.user_attrs["fail_reason"]} for t in failed]
    if complete:
        best = study.best_trials if len(study.directions) > 1 else [study.best_trial]
        report["best"] = [{"number": t.number, "values": t.values, "params": t.params,
                           "run_dir": t.user_attrs.get("run_dir")} for t in best]
    return report


def sweep_status(sweep_dir: Path, expected_runs: Sequence[str | Path] | None = None) -> dict[str, Any]:
    """The state of every run under `sweep_dir`, or, given `expected_runs`, of exactly those: one row each, in
    that order, pending where the directory does not exist; other runs sharing the folder are left out.

    An expected run is a run name (a `str`: `<sweep_dir>/<name>`) or a run directory (a `Path`, used as it is:
    relative ones, e.g. `runs/<sweep>/<run>` with the default relative `runs_dir`, are relative to the working
    directory, as the jobs wrote them; joined to `sweep_dir` they would name `runs/<sweep>/runs/<sweep>/<run>`)."""
    from omegaconf import OmegaConf

    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise FileNotFoundError(f"{sweep_dir} is not a directory")
    now = time.time()
    if expected_runs is not None:
        paths = [run if isinstance(run, Path) else sweep_dir / run for run in expected_runs]
        rows = [_run_row(path, now) if _is_run_dir(path) else pending_row(path.name) for path in paths]
        return {"sweep_dir": str(sweep_dir), "kind": "grid", "expected": len(paths), "runs": rows,
                "counts": count_states(rows)}
    rows = [_run_row(path, now) for path in sorted(sweep_dir.iterdir()) if _is_run_dir(path)]
    result: dict[str, Any] = {"sweep_dir": str(sweep_dir), "kind": "runs", "runs": rows}
    multirun_path = sweep_dir / "multirun.yaml"
    if multirun_path.exists():
        multirun = OmegaConf.load(multirun_path)
        target = str(OmegaConf.select(multirun, "hydra.sweeper._target_") or "")
        if target.endswith(GRID_SWEEPERS):
            result["kind"] = "grid"
            existing = {row["run"] for row in rows}
            expected = expected_grid_runs(multirun)
            result["expected"] = len(expected)
            rows.extend(pending_row(name) for name in expected if name not in existing)
        elif target.endswith("MerOptunaSweeper"):
            result["kind"] = "optuna"
            result["optuna"] = optuna_report(sweep_dir, multirun.hydra.sweeper)
    result["counts"] = count_states(rows)
    if result.get("kind") == "optuna" and "pending" in result["optuna"]:
        result["counts"]["pending"] = result["optuna"]["pending"]
    return result


def find_sweeps(folder: Path, depth: int = 3) -> list[Path]:
    """Sweep directories (holding a multirun.yaml) below `folder`, not counting `folder` itself; run
    directories and hidden folders (.submitit) are not searched."""
    found = []
    for path in sorted(Path(folder).iterdir()):
        if not path.is_dir() or path.name.startswith(".") or _is_run_dir(path):
            continue
        if (path / "multirun.yaml").exists():
            found.append(path)
        if depth > 1:
            found.extend(find_sweeps(path, depth - 1))
    return found


def folder_status(folder: Path) -> dict[str, Any]:
    """`sweep_status` of the folder if it is one sweep (or a folder of loose runs); of every sweep in it
    (one section each, plus one for its loose runs, and the totals) if it holds several."""
    folder = Path(folder)
    own = sweep_status(folder)  # FileNotFoundError if it is not a folder
    has_own = bool(own["runs"]) or (folder / "multirun.yaml").exists()
    nested = find_sweeps(folder)
    if not nested:
        if not has_own:
            raise NothingToShow(f"{folder} holds no runs and no sweeps: no run directory (with a summary.json, "
                                "config.json or metrics.jsonl) and no multirun.yaml, in it or below it")
        return own
    sections = ([own] if has_own else []) + [sweep_status(path) for path in nested]
    states = list(dict.fromkeys(state for section in sections for state in section["counts"]))
    totals = {state: sum(section["counts"].get(state, 0) for section in sections) for state in states}
    return {"sweep_dir": str(folder), "kind": "folder", "sweeps": sections, "counts": totals}


def _fmt(value: Any, width: int, digits: int = 4) -> str:
    if value is None:
        return "-".rjust(width)
    if isinstance(value, float):
        text = f"{value:.{digits}g}" if math.isfinite(value) else str(value)
        return text.rjust(width)
    return str(value).rjust(width)


def format_status(result: dict[str, Any]) -> str:
    """The table: one line per run (or per point, where rows carry the `point` a sweep gave them), grouped
    by state, with the reason of failed and refused ones; then the counts."""
    if result["kind"] == "folder":
        sections = [f"== {section['sweep_dir']}\n{format_status(section)}" for section in result["sweeps"]]
        totals = ", ".join(f"{n} {state}" for state, n in result["counts"].items())
        n = len(result["sweeps"])
        return "\n\n".join(sections + [f"{result['sweep_dir']}: {n} sweep{'s' * (n != 1)}; in all {totals}"])
    rows = sorted(result["runs"], key=lambda r: (STATES.index(r["status"]) if r["status"] in STATES else 9,
                                                 r.get("point") or r["run"]))
    label = "point" if any(r.get("point") for r in rows) else "run"
    names = [r.get("point") or r["run"] for r in rows]
    width = min(max([len(n) for n in names] + [len(label)]), 90)
    lines = [f"{'status':<11} {'step':>6} {'idle':>8} {'retained':>9} {'flops':>10}  {label:<{width}}  error / reason"]
    cut = False
    for row, name in zip(rows, names):
        idle = f"{row['idle_s']:.0f}s" if row["idle_s"] is not None else None
        name = name if len(name) <= width else name[:width - 3] + "..."
        reason = headline(row["error"]) if row["error"] else ""  # the whole reason: --json, summary.json
        cut = cut or reason != " ".join((row["error"] or "").split())
        lines.append(f"{row['status']:<11} {_fmt(row['step'], 6)} {_fmt(idle, 8)} {_fmt(row['retained_loss'], 9)} "
                     f"{_fmt(row['flops_train'], 10, 3)}  {name:<{width}}  {reason}".rstrip())
    counts = ", ".join(f"{n} {state}" for state, n in result["counts"].items())
    expected = f" of {result['expected']} expected" if "expected" in result else ""
    lines.append(f"{result['sweep_dir']} ({result['kind']}{expected}): {counts}")
    if cut:
        lines.append("(reasons cut to their first sentence; the full reason is in each run's summary.json, and in "
                     "the JSON of this table)")
    report = result.get("optuna")
    if report:
        if "error" in report:
            lines.append(f"study {report['study']}: {report['error']}")
        else:
            trials = ", ".join(f"{n} {state}" for state, n in report["trials"].items()) or "no trials"
            lines.append(f"study {report['study']}: {trials}; {report['pending']} of {report['n_trials']} trials to go")
            for failed in report["failed_trials"]:
                lines.append(f"  trial {failed['number']} failed: {failed['reason']}")
            for best in report.get("best", []):
                values = ", ".join(f"{v:.6g}" for v in best["values"])
                lines.append(f"  best trial {best['number']}: [{values}] {best['params']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sweeps.status", description=__doc__.split("\n\n")[0])
    parser.add_argument("sweep_dir", type=Path, help="the sweep's directory (its runs_dir / hydra.sweep.dir), or a "
                        "folder of several sweeps (e.g. runs/)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    args = parser.parse_args(argv)
    try:
        result = folder_status(args.sweep_dir)
    except (FileNotFoundError, NothingToShow) as error:
        print(f"sweeps.status: {error}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=2) if args.json else format_status(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
