"""Trainer throughput against a plain PyTorch loop, Reptile overhead and data-wait share.

    python benchmarks/bench_trainer.py                          # cpu-2m and cpu-8m, about 3 min on 2 quiet cores
    python benchmarks/bench_trainer.py --models cpu-2m --rounds 40 --fit-rounds 3
    python benchmarks/bench_trainer.py --parts step reptile      # skip the fit() and data-wait parts
    python benchmarks/bench_trainer.py --models cpu-2m --parts trackers   # experiment trackers' overhead

Parts (`--parts`), each measured in this one process with interleaved rounds: a round runs every
variant once for `--steps` steps (default 1, so the two variants alternate step by step and a change
of load on shared cores hits both alike), the order alternating from round to round; tables give
the median over rounds and the min-max spread. All on the real default data (`prepare_data` of the default five Bibles, cached in
`--data-dir`) and the model presets at `--batch` sequences per step:

step     tokens/s of `Trainer.train_step` (alpha=0, k=0: the trainer's per-step path, no eval/log/
         checkpoint) against a minimal PyTorch loop: the same `build_model` model and seed, the same
         AdamW from `build_optimizer`, the same blocks of the same shard read with numpy, cross-entropy,
         clip, step, zero_grad, nothing else. Ratio trainer/plain, target >= 0.95.
fit      a short `Trainer.fit()` (alpha=0, k=0) with the default run's evaluation, log and checkpoint
         intervals and held-out span (composed from conf/: eval every 100 steps on 2,048 tokens a task, log
         every 25, plus the initial and task-boundary evaluations and the boundary checkpoint) and its
         budget (40,960 new tokens per task), against the
         plain loop doing the same number of steps. With 1 task (default `--fit-tasks`) a run has the
         same eval/checkpoint rate per step as the full default 5-task run. Ratio reported apart.
alignment  the same short fit() (default intervals: eval every 100 steps) with eval.grad_alignment off and on, over
         `--alignment-tasks` tasks of the default budget (default 5: the default run's evaluations, whose
         alignment grows from 1 gradient at task 1 to 5 at task 5), in interleaved rounds: steps/s of each
         and the overhead; plus one alignment measurement at the last task alone (all its gradients), in s.
reptile  one `Reptile.maybe_step` interpolation (k=500, eps=0.1, anchor on cpu) on the step trainer's
         model, in ms, as a share of k x the median trainer step time, for k=500 and k=100
         (target <= 1% at k=500). Measured inside the `step` rounds.
wait     the share of step time the trainer spends getting its batch (`trainer.data_wait_s`,
         accumulated in train_step: new blocks + replay sample + tensor conversion) at alpha=0.5,
         with buffer.prefetch off and on (target <= 2%). The buffer is pre-filled with every block of
         the first two tasks and training runs on task 3, so replay reads come from three shards as in
         the middle of a real run. The alpha=0 trainer of `step` gives the new-data-only baseline.
trackers steps/s of train_step + a metrics.jsonl train line after EVERY step (log_every=1, 25x the
         default rate) with metrics.jsonl only, against the same with each installed experiment tracker
         (TensorBoard, MLflow on SQLite in the scratch folder, W&B offline) fed by `mer.trackers`' background
         thread, which shares the cores with training. Ratio tracker/jsonl, target >= 0.98. Not in the
         default parts (needs the optional extras).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import torch
from machine import format_machine, machine_info
from rounds import log
from trainer_parts import bench_alignment, bench_fit, bench_step, bench_trackers, bench_wait
from trainer_setup import Ctx
from trainer_tables import table_alignment, table_fit, table_reptile, table_step, table_trackers, table_wait

from mer.data.config import DataConfig
from mer.data.pipeline import prepare_data

DEFAULT_ROUNDS = {"cpu-0.5m": 30, "cpu-2m": 20, "cpu-8m": 6}  # rounds of the step/wait parts (~15-40 s each)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--models", nargs="+", default=["cpu-2m", "cpu-8m"], help="model presets")
    parser.add_argument("--batch", type=int, default=32, help="sequences per optimizer step")
    parser.add_argument("--seq-len", type=int, default=None, help="override the presets' seq_len")
    parser.add_argument("--steps", type=int, default=1,
                        help="steps per round and variant in the step/wait parts (1: A and B alternate every step)")
    parser.add_argument("--rounds", type=int, default=None,
                        help=f"interleaved rounds of the step and wait parts (default per model: {DEFAULT_ROUNDS})")
    parser.add_argument("--fit-rounds", type=int, default=2, help="interleaved rounds of the fit part")
    parser.add_argument("--fit-tasks", type=int, default=1, help="tasks in the fit part (default budget each)")
    parser.add_argument("--fit-models", nargs="+", default=None, help="models of the fit part (default: the first)")
    parser.add_argument("--reptile-reps", type=int, default=5, help="interpolations timed per round")
    parser.add_argument("--alpha", type=float, default=0.5, help="replay ratio of the wait part")
    parser.add_argument("--parts", nargs="+", default=["step", "fit", "reptile", "wait"],
                        choices=["step", "fit", "reptile", "wait", "trackers", "alignment"])
    parser.add_argument("--alignment-tasks", type=int, default=5, help="tasks in the alignment part")
    parser.add_argument("--alignment-rounds", type=int, default=2, help="interleaved rounds of the alignment part")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's default)")
    parser.add_argument("--data-dir", default=os.environ.get("MER_DATA_DIR", "~/.cache/mer"),
                        help="data cache (prepared once if missing; default $MER_DATA_DIR or ~/.cache/mer)")
    parser.add_argument("--json", type=Path, help="also write all raw timings to this JSON file")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    info = machine_info()
    log(f"preparing / loading the default data in {args.data_dir} ...")
    prepared = prepare_data(DataConfig(data_dir=args.data_dir))
    scratch = Path(tempfile.mkdtemp(prefix="mer-bench-trainer-"))
    ctx = Ctx(args, prepared, scratch)
    steps_results, fit_results, wait_results, tracker_results, alignment_results = [], [], [], [], []
    try:
        for model in args.models:
            steps, rounds = args.steps, args.rounds or DEFAULT_ROUNDS.get(model, 6)
            if "step" in args.parts or "reptile" in args.parts:
                steps_results.append(bench_step(ctx, model, steps, rounds, args.reptile_reps,
                                                "reptile" in args.parts))
            if "fit" in args.parts and model in (args.fit_models or args.models[:1]):
                fit_results.append(bench_fit(ctx, model, args.fit_rounds, args.fit_tasks))
            if "wait" in args.parts:
                wait_results.append(bench_wait(ctx, model, steps, rounds, args.alpha))
            if "trackers" in args.parts:
                tracker_results.append(bench_trackers(ctx, model, steps, rounds))
            if "alignment" in args.parts and model in (args.fit_models or args.models[:1]):
                alignment_results.append(bench_alignment(ctx, model, args.alignment_rounds, args.alignment_tasks))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    info["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]

    shown = " ".join(sys.argv[1:] if argv is None else argv)
    print(f"## Trainer benchmarks (python benchmarks/bench_trainer.py {shown})\n".replace(" )", ")"))
    print(format_machine(info) + "\n")
    if "step" in args.parts:
        print("### Per-step throughput: Trainer.train_step vs a plain PyTorch loop (alpha=0, k=0), "
              "median (min-max) over interleaved rounds\n")
        print(table_step(steps_results) + "\n")
    if fit_results:
        print("### Short fit() with the default intervals (eval every 100, log every 25, checkpoint every 500, "
              "initial + boundary evals, boundary checkpoint) vs the plain loop, same steps\n")
        print(table_fit(fit_results, steps_results) + "\n")
    if "reptile" in args.parts:
        print("### Reptile interpolation (eps=0.1, anchor on cpu) as a share of k steps\n")
        print(table_reptile(steps_results) + "\n")
    if wait_results:
        print("### Data wait share of step time (buffer holds tasks 1-2 entirely, training on task 3)\n")
        print(table_wait(wait_results, steps_results if "step" in args.parts else []) + "\n")
    if tracker_results:
        print("### Experiment trackers: train_step + a metrics.jsonl train line every step, metrics.jsonl only vs "
              "each tracker (its background thread on the same cores), median (min-max) over interleaved rounds\n")
        print(table_trackers(tracker_results) + "\n")
    if alignment_results:
        print("### eval.grad_alignment: short fit() with the default intervals, alignment off vs on, "
              "median (min-max) over interleaved rounds\n")
        print(table_alignment(alignment_results) + "\n")
    if args.json:
        args.json.write_text(json.dumps({"machine": info, "step": steps_results, "fit": fit_results,
                                         "wait": wait_results, "trackers": tracker_results, "alignment": alignment_results, "args": {k: str(v) for k, v in vars(args).items()}},
                                        indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
