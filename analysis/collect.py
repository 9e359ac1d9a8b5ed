"""Run directories -> two tidy tables: one row per evaluation (`evals`) and one row per run (`runs`).

Every metric is recomputed from the raw per-task losses in metrics.jsonl with `mer.evaluation.metrics`, the
same code the trainer uses for summary.json; the `summary_agrees` column says whether the two
match. Incomplete, failed and unreadable runs are kept and flagged (`status`, `complete`,
`usable`, `problems`), never dropped.

Layout (wide): per-task losses are columns ``val_loss.<task>`` in `evals`, and
``loss_after.<task>``, ``loss_end.<task>``, ``forgetting.<task>`` in `runs`. Runs with different
task sequences get different columns (NaN elsewhere) and a different `task_sequence`.

Usage: ``python -m analysis.collect <sweep dirs or globs> --out <dir>`` writes
runs.csv/runs.parquet and evals.csv/evals.parquet.
"""

from __future__ import annotations

import argparse
import glob
import math
import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from analysis.alignment import alignment_columns
from analysis.model_identity import label_models, vocab_size
from analysis.provenance import provenance_columns
from analysis.rundir import RunData, is_run_dir, read_run
from mer.evaluation import metrics

FLOP_KINDS = ("flops_new", "flops_replay", "flops_eval", "flops_reptile", "flops_train")
RECORD_FIELDS = ("step", "task", "task_index", "tokens_new", "tokens_replay", *FLOP_KINDS, "lr", "wall_time")
SUMMARY_METRICS = ("learned_loss", "retained_loss", "forgetting", "backward_transfer")


@dataclass
class Collection:
    """The two tables and the problems met while building them."""

    runs: pd.DataFrame
    evals: pd.DataFrame
    problems: list[str] = field(default_factory=list)


def find_run_dirs(paths: Iterable[str | Path]) -> list[Path]:
    """Run directories at or below each path; a path may be a glob. Sorted, without duplicates.

    A folder that is itself a run is not searched further (its checkpoint/ holds no runs).
    """
    found: dict[Path, None] = {}
    for arg in paths:
        matches = sorted(glob.glob(str(arg), recursive=True)) if glob.has_magic(str(arg)) else [str(arg)]
        for m in matches:
            root = Path(m)
            if not root.is_dir():
                continue
            if is_run_dir(root):
                found.setdefault(root.resolve(), None)
                continue
            for dirpath, dirnames, _ in os.walk(root):
                here = Path(dirpath)
                if is_run_dir(here):
                    found.setdefault(here.resolve(), None)
                    dirnames.clear()
                else:
                    dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
    return sorted(found)


def collect(paths: Iterable[str | Path], *, progress: bool = True) -> Collection:
    """Find and read every run under `paths`; build the `runs` and `evals` tables."""
    dirs = find_run_dirs(paths)
    problems: list[str] = []
    if not dirs:
        problems.append(
            "no runs found: no folder under the given paths has metrics.jsonl (or config.yaml / config.json and "
            "summary.json); "
            "pass the sweep folder(s) that hold the run directories (globs are allowed)"
        )
        return Collection(pd.DataFrame(), pd.DataFrame(), problems)
    root = Path(os.path.commonpath([str(d) for d in dirs])) if len(dirs) > 1 else dirs[0].parent
    run_rows, eval_frames = [], []
    for d in tqdm(dirs, desc="reading runs", unit="run", disable=not progress or len(dirs) < 20):
        run = read_run(d)
        run_id = str(d.relative_to(root)) if d != root else d.name
        row, evals = tabulate_run(run, run_id)
        run_rows.append(row)
        if not evals.empty:
            eval_frames.append(evals)
    runs = pd.DataFrame(run_rows)
    evals = pd.concat(eval_frames, ignore_index=True) if eval_frames else pd.DataFrame()
    # Runs are grouped by what they trained, never by a name an override can contradict (analysis.model_identity).
    runs, notes = label_models(runs)
    problems.extend(notes)
    if not evals.empty:
        evals["model"] = evals["run_id"].map(dict(zip(runs["run_id"], runs["model"], strict=True)))
    for _, r in runs[runs["problems"] != ""].iterrows():
        problems.append(f"run {r['run_id']}: {r['problems']}")
    return Collection(runs, evals, problems)


def tabulate_run(run: RunData, run_id: str) -> tuple[dict[str, Any], pd.DataFrame]:
    """One run -> (its row of the runs table, its rows of the evals table)."""
    s = run.settings
    tasks: list[str] = s["tasks"]
    summary = run.summary or {}
    problems = list(run.problems)
    # What the losses were measured on (mer.evaluation.windows); None for runs from before the fingerprint.
    fingerprint = summary.get("eval_fingerprint_id")
    base: dict[str, Any] = {
        "run_id": run_id,
        "run_name": run.name,
        "run_dir": str(run.path),
        "sweep": run.path.parent.name,
        "model": s["model"],  # replaced by the identity's label in `collect` (analysis.model_identity)
        "model_name": s["model"],
        **s["model_shape"],
        "alpha": s["alpha"],
        "k": s["k"],
        "eps": s["eps"],
        "reptile": s["reptile"],
        "reptile_steps": s["reptile_steps"],
        "seed": s["seed"],
        "task_sequence": ">".join(tasks),
        "n_tasks": len(tasks),
        "n_params": _num(summary.get("n_params")),
        "n_params_nonembedding": _num(summary.get("n_params_nonembedding")),
        "vocab_size": vocab_size(s["model_shape"], _num(summary.get("n_params")), _num(summary.get("n_params_nonembedding"))),
        "status": run.status,
        "eval_fingerprint": fingerprint if isinstance(fingerprint, str) else None,
        **provenance_columns(summary),  # git_commit, git_dirty, command (analysis.provenance)
    }

    evals = run.evals
    losses = np.array([[_num((e.get("val_loss") or {}).get(t)) for t in tasks] for e in evals], dtype=float).reshape(len(evals), len(tasks))
    missing = [t for j, t in enumerate(tasks) if evals and np.all(np.isnan(losses[:, j]))]
    if missing:
        problems.append(f"no val_loss recorded for task(s) {missing}")
    task_index = np.array([int(e.get("task_index", -1)) for e in evals], dtype=int)
    boundary = np.array([bool(e.get("boundary", False)) for e in evals], dtype=bool)

    curve = np.full(len(evals), np.nan)
    row_metrics: dict[str, Any] = {m: math.nan for m in SUMMARY_METRICS}
    for t in tasks:
        row_metrics[f"loss_after.{t}"] = row_metrics[f"loss_end.{t}"] = row_metrics[f"forgetting.{t}"] = math.nan
    complete = False
    incomplete_reason = ""
    if not evals or not tasks:
        incomplete_reason = "no evaluation logged"
    else:
        try:
            curve = metrics.forgetting_curve(losses, task_index, boundary)
            summ = metrics.summary_metrics(losses, task_index, boundary, task_names=tasks)
            matrix = metrics.loss_matrix(losses, task_index, boundary)
        except ValueError as exc:
            incomplete_reason = str(exc)
        else:
            complete = True
            row_metrics.update({m: summ[m] for m in SUMMARY_METRICS})
            for j, t in enumerate(tasks):
                row_metrics[f"loss_after.{t}"] = float(matrix[j, j])
                row_metrics[f"loss_end.{t}"] = float(matrix[-1, j])
                row_metrics[f"forgetting.{t}"] = summ["forgetting_per_task"][t]
    if base["status"] == "completed" and not complete:
        problems.append(f"summary.json says completed but metrics cannot be computed: {incomplete_reason}")

    last = run.records[-1] if run.records else {}
    totals = {f: _num(last.get(f)) for f in ("step", "tokens_new", "tokens_replay", *FLOP_KINDS, "wall_time")}
    per_token = totals["flops_train"] / totals["tokens_new"] if totals["tokens_new"] and totals["tokens_new"] > 0 else math.nan
    agrees = _summary_agrees(summary.get("metrics"), row_metrics) if complete else None
    if agrees is False:
        problems.append("summary.json metrics differ from the recomputation from metrics.jsonl")
    finite = complete and all(math.isfinite(row_metrics[m]) for m in ("learned_loss", "retained_loss"))
    if complete and not finite:
        problems.append("non-finite loss (diverged run?): left out of fits and tables")
    tasks_done = int(boundary.sum()) if evals else 0
    row = {
        **base,
        "complete": complete,
        "usable": bool(finite) and not run.unusable,  # never on guessed settings
        "tasks_done": tasks_done,
        "incomplete_reason": incomplete_reason,
        "error": summary.get("error") or "",
        "n_evals": len(evals),
        **{f"final_{k}": v for k, v in totals.items()},
        "flops_per_new_token": per_token,
        **row_metrics,
        "summary_agrees": agrees,
        "problems": "; ".join(problems),
    }

    if not evals:
        return row, pd.DataFrame()
    ev = pd.DataFrame({f: [_num(e.get(f)) if f not in ("task",) else e.get(f) for e in evals] for f in RECORD_FIELDS})
    ev["boundary"] = boundary
    ev["tokens"] = ev["tokens_new"] + ev["tokens_replay"]
    for j, t in enumerate(tasks):
        ev[f"val_loss.{t}"] = losses[:, j]
    ev["val_loss_mean"] = np.nanmean(losses, axis=1) if tasks else np.nan
    ev = ev.assign(**alignment_columns(evals, tasks))  # grad_cosine_mean, grad_cosine.<task> (analysis.alignment)
    ev["forgetting_curve"] = curve
    ev["eval_index"] = np.arange(len(evals))
    for key in ("run_id", "model", "alpha", "k", "eps", "reptile", "seed", "task_sequence", "n_params", "n_params_nonembedding", "status"):
        ev[key] = base[key]
    ev["complete"] = complete
    front = ["run_id", "model", "n_params", "n_params_nonembedding", "alpha", "k", "eps", "reptile", "seed", "status", "complete"]
    return row, ev[front + [c for c in ev.columns if c not in front]]


def write_tables(col: Collection, out: Path) -> list[Path]:
    """Write runs and evals as CSV and Parquet into `out`; returns the paths written."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, df in (("runs", col.runs), ("evals", col.evals)):
        if df.empty:
            continue
        for suffix, writer in ((".csv", lambda p, d=df: d.to_csv(p, index=False)), (".parquet", lambda p, d=df: d.to_parquet(p, index=False))):
            path = out / f"{name}{suffix}"
            writer(path)
            written.append(path)
    return written


def _summary_agrees(saved: Any, recomputed: dict[str, Any]) -> bool | None:
    """True/False when summary.json holds metrics to compare with; None when it holds none."""
    if not isinstance(saved, dict):
        return None
    for m in SUMMARY_METRICS:
        a, b = _num(saved.get(m)), recomputed[m]
        if not (math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12) or (math.isnan(a) and math.isnan(b))):
            return False
    return True


def _num(value: Any) -> float:
    """A JSON number as float; NaN for null, missing or non-numeric values."""
    if isinstance(value, bool) or value is None:
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+", help="sweep folders, run folders or globs")
    parser.add_argument("--out", type=Path, required=True, help="folder for runs.* and evals.*")
    args = parser.parse_args(argv)
    col = collect(args.paths)
    for p in col.problems:
        print(f"warning: {p}", file=sys.stderr)
    if col.runs.empty:
        return 1
    for p in write_tables(col, args.out):
        print(p)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
