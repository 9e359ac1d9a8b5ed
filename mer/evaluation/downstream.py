"""Downstream accuracy of a run's models through lm-evaluation-harness (the optional extra `.[eval]`).

    python -m mer.downstream RUN_DIR --tasks bible_cloze [hellaswag ...] [--limit N] [--include-path DIR]
                             [--batch-size 32] [--num-fewshot N] [--device auto]

scores every model exported in the run directory, in task order: `models/after_<task>/` (kept by
`export_each_task=true`), then any other folder under `models/` (e.g. one written by
`python -m mer.export RUN_DIR --out RUN_DIR/models/final`), each through the harness' Hugging Face model
class, and writes `downstream.jsonl` into the run directory: one record per model x task x metric, with
its standard error (docs/run_directory.md). `python -m analysis.report` turns those records into a
downstream table and the "downstream accuracy after each task" figure.

Tasks: `bible_cloze` (every Bible task of the run's sequence, `bible_cloze_<task>` for one; built at
preparation time, no network: `mer.data.cloze`), any harness task whose data the harness can load (its
usual cache, or the network where there is one), and your own task YAML with `--include-path DIR`.
Exit status 2, with the reason, when there is nothing to score or the harness is missing.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path
from typing import Any

from mer.evaluation.harness import HarnessError, evaluate, harness_version, headline, record_results, task_manager
from mer.hf.export import MODELS_DIR
from mer.rundir.layout import read_config, read_summary

log = logging.getLogger("mer.evaluation.downstream")


class NothingToScore(ValueError):
    """The run directory holds no exported model (or is no run directory)."""


def models_of(run_dir: Path, tasks: list[str]) -> list[tuple[str, str | None, Path]]:
    """(name, task it was taken after or None, folder) of every exported model of the run, in task order."""
    folder = run_dir / MODELS_DIR
    found = {p.name: p for p in sorted(folder.iterdir()) if (p / "config.json").is_file()} if folder.is_dir() else {}
    ordered = [(f"after_{t}", t, found.pop(f"after_{t}")) for t in tasks if f"after_{t}" in found]
    return ordered + [(name, None, path) for name, path in found.items()]


def run_cloze_folder(config: dict[str, Any]) -> Path | None:
    """The built-in cloze task folder of the run's data sequence (written if its preparation predates it)."""
    from omegaconf import OmegaConf

    from mer.data.config import DataConfig
    from mer.data.pipeline import prepare_cloze_tasks

    data = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(DataConfig), config["data"]))
    return prepare_cloze_tasks(data)


def score_run(run_dir: Path, tasks: list[str], *, limit: int | None = None, include_paths: list[Path] = (),
              batch_size: int = 32, num_fewshot: int | None = None, device: str | None = None) -> list[dict]:
    """Score every exported model of `run_dir` on `tasks`, record the results in its downstream.jsonl (after
    each model, so an interrupted call keeps what it finished) and return them. Raises NothingToScore or
    HarnessError (module docstring)."""
    read, summary = read_config(run_dir), read_summary(run_dir) or {}
    config = read.config
    if config is None:
        raise NothingToScore(f"{run_dir} is not a run directory ({'; '.join(read.problems)})")
    sequence = summary.get("tasks") or [t["name"] for t in config["data"]["tasks"]]
    models = models_of(run_dir, sequence)
    if not models:
        raise NothingToScore(f"{run_dir} holds no exported model: train it with export_each_task=true (one model per "
                             f"task boundary), or export its final model with `python -m mer.export {run_dir} "
                             f"--out {run_dir / MODELS_DIR / 'final'}`")
    cloze = run_cloze_folder(config)
    manager = task_manager(tasks, [p for p in [cloze, *include_paths] if p is not None])
    steps = summary.get("steps_per_task") or {}
    version, records = harness_version(), []
    for name, after_task, folder in models:
        started = time.perf_counter()
        index = sequence.index(after_task) if after_task is not None else None
        step = sum(steps.get(t, 0) for t in sequence[: index + 1]) if index is not None and steps else None
        found = evaluate(folder, None, tasks, manager, limit=limit, batch_size=batch_size, num_fewshot=num_fewshot,
                         device=device)
        for record in found:
            record.update(model=name, after_task=after_task, task_index=index, step=step, source="mer.downstream",
                          harness=version)
        record_results(run_dir, found)
        records += found
        log.info("%s: %d records in %.1f s", name, len(found), time.perf_counter() - started)
    return records


def format_records(records: list[dict]) -> str:
    """The headline metric (`mer.evaluation.harness.HEADLINE_METRICS`) per model (rows) and task (columns), groups left out."""
    rows: dict[str, dict[str, str]] = {}
    shown = [r for model in dict.fromkeys(r["model"] for r in records)
             for r in headline([o for o in records if o["model"] == model and not o["group"]])]
    for r in shown:
        err = f"+-{r['stderr']:.3f}" if r.get("stderr") is not None else ""
        rows.setdefault(r["model"], {})[f"{r['task']} {r['metric']}"] = f"{r['value']:.3f}{err}"
    columns = sorted({c for row in rows.values() for c in row})
    width = max([12, *(len(c) + 2 for c in columns)])
    lines = [f"{'model':<16}" + "".join(f"{c:>{width}}" for c in columns)]
    for model, row in rows.items():
        lines.append(f"{model:<16}" + "".join(f"{row.get(c, ''):>{width}}" for c in columns))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mer.downstream", description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path, help="the run directory (runs/<name>)")
    parser.add_argument("--tasks", nargs="+", required=True,
                        help="harness task or group names (comma-separated or several), e.g. bible_cloze")
    parser.add_argument("--limit", type=int, default=None, help="at most this many documents per task")
    parser.add_argument("--include-path", type=Path, action="append", default=[],
                        help="a folder of your own harness task YAML (repeatable)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--num-fewshot", type=int, default=None)
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:N (default: cuda when available)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    # One line per model from here; the harness warns once per truncated request, which drowns everything else.
    logging.getLogger("lm_eval").setLevel(logging.ERROR)
    tasks = [t for item in args.tasks for t in item.split(",") if t]
    try:
        records = score_run(args.run_dir, tasks, limit=args.limit, include_paths=args.include_path,
                            batch_size=args.batch_size, num_fewshot=args.num_fewshot, device=args.device)
    except (NothingToScore, HarnessError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(format_records(records))
    if args.limit is not None:  # say it: these are not the full-set scores, which downstream.jsonl keeps apart
        print(f"scores on at most {args.limit} documents per task (--limit {args.limit}); full-set scores of the "
              "same models, if any, are kept beside them and the report shows those")
    print(f"{len(records)} records -> {args.run_dir / 'downstream.jsonl'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
