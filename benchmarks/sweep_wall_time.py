"""Wall time of a finished sweep, from its run directories: per model size, in all, and projected to more seeds.

    python benchmarks/sweep_wall_time.py runs/replay_vs_scale
    python benchmarks/sweep_wall_time.py runs/replay_vs_scale --seeds 3    # the preset's 3 seeds from 1 run

A sweep is timed by running it (`python -m mer.run -m +sweep=...`); this script only reads what the runs
wrote, so it costs nothing: `train+eval` is the sum of summary.json's `wall_time_s` (training, evaluation and
checkpoints of every run), `elapsed` runs from the first config.json written to the last summary.json, so it
also holds each job's start-up (imports, data loading, model build). `--seeds S` scales `elapsed` by S over
the number of seeds the sweep holds: seeds change no cost, only the random numbers. Run it on the machine the
sweep ran on, or read the machine line as this machine's, not the sweep's.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import format_machine, machine_info  # noqa: E402


def read_runs(sweep_dir: Path) -> list[dict]:
    """model, seed, status, wall time and file times of every run directory of the sweep."""
    runs = []
    for summary_path in sorted(sweep_dir.glob("*/summary.json")):
        config_path = summary_path.with_name("config.json")
        if not config_path.exists():
            continue  # a refused point: nothing ran
        summary, config = json.loads(summary_path.read_text()), json.loads(config_path.read_text())
        runs.append({"model": config["model"]["name"], "seed": config["seed"], "status": summary["status"],
                     "wall_time_s": float(summary.get("wall_time_s") or 0.0),
                     "started": config_path.stat().st_mtime, "ended": summary_path.stat().st_mtime})
    return runs


def format_report(sweep_dir: Path, runs: list[dict], seeds: int | None) -> str:
    by_model: dict[str, list[dict]] = defaultdict(list)
    for run in runs:
        by_model[run["model"]].append(run)
    lines = [f"sweep {sweep_dir}: {len(runs)} runs, "
             f"{sum(r['status'] == 'completed' for r in runs)} completed",
             "", "| model | runs | train+eval (s) | mean per run (s) |", "| --- | --- | --- | --- |"]
    for model, group in sorted(by_model.items(), key=lambda kv: sum(r["wall_time_s"] for r in kv[1])):
        total = sum(r["wall_time_s"] for r in group)
        lines.append(f"| {model} | {len(group)} | {total:,.0f} | {total / len(group):,.0f} |")
    train_eval = sum(r["wall_time_s"] for r in runs)
    elapsed = max(r["ended"] for r in runs) - min(r["started"] for r in runs)
    n_seeds = len({r["seed"] for r in runs})
    lines += [f"| all | {len(runs)} | {train_eval:,.0f} | {train_eval / len(runs):,.0f} |", "",
              f"elapsed (first config.json to last summary.json, start-ups included): {elapsed:,.0f} s "
              f"= {elapsed / 3600:.2f} h over {n_seeds} seed(s)"]
    if seeds is not None:
        projected = elapsed * seeds / n_seeds
        lines.append(f"projected for {seeds} seeds (x {seeds}/{n_seeds}): {projected:,.0f} s = {projected / 3600:.2f} h")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sweep_dir", type=Path, help="a finished sweep's folder (its runs_dir)")
    parser.add_argument("--seeds", type=int, help="project the elapsed time to this many seeds")
    args = parser.parse_args(argv)
    runs = read_runs(args.sweep_dir)
    if not runs:
        print(f"sweep_wall_time: no run directory with config.json and summary.json under {args.sweep_dir}",
              file=sys.stderr)
        return 2
    info = machine_info()
    info["loadavg_end"] = info["loadavg_start"]  # reading the run directories takes no time
    print(format_machine(info))
    print(format_report(args.sweep_dir, runs, args.seeds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
