"""Downstream accuracy: the harness records of every run (downstream.jsonl) -> table, figure, report section.

`python -m mer.downstream` (or `eval.downstream` during training) writes one record per model x task x
metric into a run's downstream.jsonl (docs/run_directory.md). Here they become:

- `data/downstream.csv`: every record, with the run's id;
- `tables/downstream.{md,tex}`: per run and model (in task order: the model after task 1, after task 2, ...)
  the headline metric (`HEADLINE_METRICS`) ± its standard error on each harness task (groups left out): the
  full-set score where there is one, else the `--limit N` one, marked `(limit N)`;
- `figures/downstream_after_each_task.{png,pdf}`: per run, the accuracy on each harness task after each
  training task: the downstream forgetting matrix, read along a line (task `bible_cloze_fr` rising after
  `fr`, then falling while later tasks train, is forgetting). The dashed line is chance for `bible_cloze`;
- a "Downstream accuracy" section appended to report.md.

Only pandas and matplotlib: like the rest of the analysis, this never imports torch (or the harness).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

DOWNSTREAM_FILE = "downstream.jsonl"
FIGURE = "downstream_after_each_task"
MAX_PANELS = 12
CHANCE = {"bible_cloze": 0.25}
"""Chance level of the built-in tasks, by name prefix (drawn as a dashed line)."""


def read_downstream(runs: Iterable[tuple[str, Path]]) -> tuple[pd.DataFrame, list[str]]:
    """Every record of the runs' downstream.jsonl files, with a `run_id` column; and the problems met (a line
    that is not JSON is skipped and named)."""
    rows: list[dict[str, Any]] = []
    problems: list[str] = []
    for run_id, run_dir in runs:
        path = Path(run_dir) / DOWNSTREAM_FILE
        if not path.is_file():
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                rows.append({"run_id": run_id, **json.loads(line)})
            except json.JSONDecodeError:
                problems.append(f"{path}: line {number} is not JSON; skipped")
    return pd.DataFrame(rows), problems


HEADLINE_METRICS = ("acc_mutual_info", "acc_norm", "acc")
"""The metric shown for a task, the first it has (as `mer.evaluation.harness.HEADLINE_METRICS`): acc_mutual_info where a task
asks for it (bible_cloze), else acc_norm (hellaswag, arc...), else acc, else the task's first metric."""


def full_set_first(records: pd.DataFrame) -> pd.DataFrame:
    """Per run, model, task, metric and filter the one record to show: the full-set score (`limit` null) where
    there is one, else the one on the most documents (`--limit N` scores are kept beside full ones, never in
    their place: mer.evaluation.harness)."""
    if "limit" not in records:
        return records
    limit = pd.to_numeric(records["limit"], errors="coerce")
    ranked = records.assign(_rank=limit.fillna(float("inf")))
    keys = [c for c in ("run_id", "model", "task", "metric", "filter") if c in ranked]
    best = ranked.groupby(keys, dropna=False)["_rank"].transform("max")
    return ranked[ranked["_rank"] == best].drop(columns="_rank")


def limit_note(record: pd.Series) -> str:
    """' (limit N)' for a score on at most N documents per task, '' for a full-set score."""
    limit = record.get("limit")
    return f" (limit {int(limit)})" if limit is not None and pd.notna(limit) else ""


def headline(records: pd.DataFrame) -> pd.DataFrame:
    """The records the table and figure show: per task (not group) its HEADLINE_METRICS metric, the full-set score
    where there is one (`full_set_first`); sorted by run, model order (task_index; models taken after no task
    last) and task."""
    records = full_set_first(records)
    tasks = records[~records["group"].astype(bool)]
    tasks = tasks[~tasks["metric"].isin(["sample_len"])]
    rank = tasks["metric"].map(lambda m: HEADLINE_METRICS.index(m) if m in HEADLINE_METRICS else len(HEADLINE_METRICS))
    best = rank.groupby(tasks["task"]).transform("min")
    first = tasks.groupby("task")["metric"].transform("first")
    keep = (rank == best) & ((rank < len(HEADLINE_METRICS)) | (tasks["metric"] == first))
    shown = tasks[keep].copy()
    shown["order"] = shown["task_index"].fillna(1e9)
    return shown.sort_values(["run_id", "order", "model", "task"]).drop(columns="order")


def downstream_table(records: pd.DataFrame) -> pd.DataFrame:
    """One row per run and model, one column per harness task: 'value ± stderr' (metric in the header), with
    ' (limit N)' when only a score on at most N documents per task exists."""
    shown = headline(records)
    cell = shown.apply(lambda r: f"{r['value']:.3f}" + (f" ± {r['stderr']:.3f}" if pd.notna(r.get("stderr")) else "")
                       + limit_note(r), axis=1)
    shown = shown.assign(cell=cell, column=shown["task"] + " " + shown["metric"])
    table = shown.pivot_table(index=["run_id", "model"], columns="column", values="cell", aggfunc="last", sort=False)
    return table.reset_index().rename_axis(columns=None)


def plot_downstream(records: pd.DataFrame) -> tuple[Figure | None, int]:
    """Accuracy on each harness task after each training task, one panel per run (the first MAX_PANELS runs);
    None without any model taken after a task. Returns the figure and the number of runs left out."""
    shown = headline(records)
    shown = shown[shown["after_task"].notna()]
    if shown.empty:
        return None, 0
    run_ids = list(dict.fromkeys(shown["run_id"]))
    dropped = max(0, len(run_ids) - MAX_PANELS)
    run_ids = run_ids[:MAX_PANELS]
    cols = min(3, len(run_ids))
    rows = -(-len(run_ids) // cols)
    fig = Figure(figsize=(4.2 * cols, 3.2 * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax, run_id in zip(axes, run_ids):
        mine = shown[shown["run_id"] == run_id]
        order = mine.drop_duplicates("after_task").sort_values("task_index")["after_task"].tolist()
        position = {t: i for i, t in enumerate(order)}
        for task, line in mine.groupby("task", sort=True):
            line = line.sort_values("task_index")
            x = line["after_task"].map(position)
            ax.errorbar(x, line["value"], yerr=line["stderr"].astype(float).fillna(0.0), marker="o", capsize=2,
                        label=f"{task} ({line['metric'].iloc[0]})")
        for prefix, level in CHANCE.items():
            if mine["task"].str.startswith(prefix).any():
                ax.axhline(level, color="0.5", ls="--", lw=1, label=f"chance ({prefix})")
        ax.set_xticks(range(len(order)), [f"after {t}" for t in order], fontsize=8)
        ax.set_ylabel("downstream accuracy")
        ax.set_title(run_id, fontsize=9)
        ax.legend(fontsize=7)
    for ax in axes[len(run_ids):]:
        ax.set_visible(False)
    return fig, dropped


def add_downstream(rep) -> None:
    """Add the downstream table, figure and report section to a report (`analysis.report_contents.Report`) when
    any run has downstream records; nothing otherwise."""
    from analysis import tables
    from analysis.figure_style import save

    runs = rep.collection.runs
    if runs.empty:
        return
    records, problems = read_downstream(zip(runs["run_id"], runs["run_dir"]))
    rep.problems += problems
    if records.empty:
        return
    (rep.out / "data").mkdir(parents=True, exist_ok=True)
    records.to_csv(rep.out / "data" / "downstream.csv", index=False)
    table = downstream_table(records)
    tdir = rep.out / "tables"
    tdir.mkdir(parents=True, exist_ok=True)
    (tdir / "downstream.md").write_text(tables.to_markdown(table), encoding="utf-8")
    (tdir / "downstream.tex").write_text(tables.to_latex(table, caption="Downstream accuracy (lm-evaluation-harness) "
                                                         "of each run's models, ± standard error",
                                                         label="tab:downstream"), encoding="utf-8")
    rep.files += [rep.out / "data" / "downstream.csv", tdir / "downstream.md", tdir / "downstream.tex"]
    fig, dropped = plot_downstream(records)
    lines = ["", "## Downstream accuracy", "",
             "lm-evaluation-harness scores of the models kept after each task (`python -m mer.downstream`), "
             "± standard error; `bible_cloze` is 4-way multiple choice (chance 0.25). A cell shows the full-set "
             "score where there is one; `(limit N)` marks a score on at most N documents per task "
             "(`--limit N`), kept apart from the full-set scores in downstream.jsonl.", "",
             tables.to_markdown(table), "LaTeX: [tables/downstream.tex](tables/downstream.tex); every record: "
             "`data/downstream.csv`.", ""]
    if fig is not None:
        rep.files += save(fig, rep.out / "figures", FIGURE)
        lines += [f"![{FIGURE}](figures/{FIGURE}.png)", "",
                  "Accuracy on each downstream task after each training task: the downstream forgetting matrix.", ""]
        if dropped:
            rep.problems.append(f"{FIGURE} shows the first {MAX_PANELS} runs; {dropped} more are in data/downstream.csv")
    with (rep.out / "report.md").open("a", encoding="utf-8") as handle:
        handle.write("\n".join(lines))
