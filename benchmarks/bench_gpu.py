"""Single-GPU throughput and MFU of the trainer against a plain PyTorch loop; the cost of replay and of Reptile.

    python benchmarks/bench_gpu.py                                  # one H100/H200: 560m and 99m, bf16 (~3 min)
    python benchmarks/bench_gpu.py --models 560m --compile --json gpu.json
    python benchmarks/bench_gpu.py --device cpu                     # CPU smoke check: cpu-2m, fp32 (~20 s)

For every model preset (`mer.model.llama.PRESETS`; the paper's ladder runs at seq_len 2048 and vocabulary
50304), three variants train on the same synthetic data, interleaved in this one process: a round
runs every variant for `--steps` optimizer steps of `--batch` sequences, the order rotating from
round to round so that each variant goes first, second and third alike; tables give the median over
`--rounds` rounds with the min-max spread. `--warmup` steps of every variant come first, untimed
(allocator, cuDNN/cuBLAS heuristics, torch.compile). On CUDA every timed region starts and ends with
`torch.cuda.synchronize()`, so a time is the GPU's work, not the launch queue's.

plain              nanoGPT's loop over the model: a seeded random batch of blocks read from the task's
                   memory-mapped shard with numpy, pinned and copied to the GPU, bf16 autocast forward,
                   cross-entropy, backward, clip, AdamW step, zero_grad; nothing else. By default it drives
                   the alpha=0 trainer's own model, compiled module and optimizer (`--plain-model shared`:
                   the same `build_model` / `build_optimizer` objects, and one 560m copy fewer in GPU
                   memory); `--plain-model own` builds its own with the same calls and seed.
trainer alpha=0    `Trainer.train_step` (the per-step path of fit(), without its eval/log/checkpoint).
trainer alpha=0.5  the same at `--alpha`, in the middle of a run: the buffer holds every block of tasks
                   1 and 2 (by reference, the default buffer) and training runs on task 3, so the replayed
                   half of every batch is random block reads from three shards on disk.

Reported per variant: trained tokens/s (new + replayed), ms/step, MFU (FLOPs per trained token from
`mer.compute.flops.estimate_flops`, the peak from `mer.compute.mfu.device_peak_flops`), the ratio to the plain loop,
the share of step time spent getting the batch (host time from the start of the step to the batch
being queued for the GPU: `Trainer.data_wait_s`, or the same span of the plain loop), and peak GPU
memory (what the variant would need alone: its weights and AdamW state plus the most its steps
allocated on top of everything resident, since all variants live in this one process). Targets (the issue): MFU >= 40%
for 560m in bf16; replay at alpha=0.5 costs <= 2% of throughput per trained token against alpha=0;
trainer/plain >= 0.95 (bench_trainer's target). Reptile: one `Reptile.maybe_step` interpolation
(k=500, eps=0.1) on the alpha=0 trainer's model, anchor on the CPU (the default
`reptile_anchor_device`) and on the GPU, in ms and as a share of k trainer steps (k=500 and 100).

Data: 3 tasks of uniform random tokens (`--task-tokens` each; 16M = 32 MB at vocab 50304) written as
pre-tokenized files with a tokenizer of the preset's vocabulary (`synthetic_tokens.py`) and prepared by
`mer.data.pipeline.prepare_data` like any `source: tokens` data set, in `--data-dir` (kept, reused) or a
temporary directory (deleted). Run directories go to a temporary directory, deleted at the end.
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
from gpu_measure import bench_model, free_memory
from gpu_setup import N_TASKS, Bench
from gpu_tables import device_line, table_reptile, table_targets, table_variants
from machine import format_machine, machine_info
from rounds import log
from synthetic_tokens import synthetic_data_config

from mer.data.config import DataConfig
from mer.data.pipeline import PreparedData, prepare_data
from mer.model.llama import PRESET_VOCAB, get_preset
from mer.parallel.distributed import resolve_device


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--models", nargs="+", default=None,
                        help="model presets (default: 560m 99m on cuda, cpu-2m on cpu)")
    parser.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda or cuda:N")
    parser.add_argument("--precision", choices=["bf16", "fp32"], default=None,
                        help="default: bf16 on cuda, fp32 on cpu (bf16 is refused on cpu)")
    parser.add_argument("--batch", type=int, default=8,
                        help="sequences per optimizer step (8 x 2048 tokens of 560m fit an 80 GB H100)")
    parser.add_argument("--grad-accum", type=int, default=1, help="micro-batches per optimizer step")
    parser.add_argument("--seq-len", type=int, default=None, help="override the presets' seq_len")
    parser.add_argument("--vocab", type=int, default=None,
                        help="vocabulary of the synthetic data (default: the preset's, 50304 or 4096 for cpu-*)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the training model")
    parser.add_argument("--activation-checkpointing", action="store_true",
                        help="recompute activations in the backward pass (lowers MFU: recomputing is not model FLOPs)")
    parser.add_argument("--alpha", type=float, default=0.5, help="replay ratio of the replay variant")
    parser.add_argument("--prefetch", action="store_true", help="buffer.prefetch on for the replay variant")
    parser.add_argument("--plain-model", choices=["shared", "own"], default="shared",
                        help="plain loop on the alpha=0 trainer's model and optimizer, or on its own copy")
    parser.add_argument("--rounds", type=int, default=6, help="interleaved rounds (a multiple of 3 rotates evenly)")
    parser.add_argument("--steps", type=int, default=None, help="steps per variant and round (default 10 cuda, 2 cpu)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps per variant (default 3 cuda, 1 cpu)")
    parser.add_argument("--reptile-reps", type=int, default=1, help="interpolations timed per anchor and round")
    parser.add_argument("--peak-flops", type=float, default=None, help="peak FLOP/s of the device for MFU")
    parser.add_argument("--task-tokens", type=int, default=None,
                        help="training tokens per synthetic task (default 16M on cuda, 2M on cpu)")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="where the synthetic data go (kept and reused); default a temporary directory")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--json", type=Path, help="also write all raw timings to this JSON file")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    cuda = device.type == "cuda"
    models = args.models or (["560m", "99m"] if cuda else ["cpu-2m"])
    bench = Bench(
        device=device, precision=args.precision or ("bf16" if cuda else "fp32"), batch=args.batch,
        grad_accum=args.grad_accum, seq_len=args.seq_len, compile=args.compile,
        activation_checkpointing=args.activation_checkpointing, alpha=args.alpha, prefetch=args.prefetch,
        plain_model=args.plain_model, warmup=args.warmup if args.warmup is not None else (3 if cuda else 1),
        steps=args.steps or (10 if cuda else 2), rounds=args.rounds, reptile_reps=args.reptile_reps,
        peak_flops=args.peak_flops,
    )
    task_tokens = args.task_tokens or (16_000_000 if cuda else 2_000_000)
    seq_lens = [bench.seq_len or get_preset(m).seq_len for m in models]
    val_tokens = 2 * (max(seq_lens) + 1)  # the trainers need a held-out span; nothing is evaluated here
    if task_tokens < 4 * bench.batch * (max(seq_lens) + 1):
        raise SystemExit(f"--task-tokens {task_tokens:,} holds fewer than 4 batches of "
                         f"{max(seq_lens) + 1}-token blocks")

    info = machine_info()
    scratch = Path(tempfile.mkdtemp(prefix="mer-bench-gpu-"))
    data_root = args.data_dir.expanduser() if args.data_dir else scratch / "data"
    (scratch / "runs").mkdir()
    results = []
    try:
        prepared_by_vocab: dict[int, tuple[DataConfig, PreparedData]] = {}
        for model in models:
            vocab = args.vocab or PRESET_VOCAB[get_preset(model).name]  # get_preset refuses unknown names
            if vocab not in prepared_by_vocab:
                log(f"writing {N_TASKS} synthetic tasks of {task_tokens:,} tokens at vocab {vocab} in {data_root} ...")
                data = synthetic_data_config(data_root, vocab, N_TASKS, task_tokens, val_tokens)
                prepared_by_vocab[vocab] = (data, prepare_data(data))
            data, prepared = prepared_by_vocab[vocab]
            results.append(bench_model(bench, model, prepared, data, scratch / "runs"))
            free_memory(bench)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    info["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]

    shown = " ".join(sys.argv[1:] if argv is None else argv)
    print(f"## Single-GPU benchmarks (python benchmarks/bench_gpu.py {shown})\n".replace(" )", ")"))
    print(format_machine(info, device_line(bench, results)) + "\n")
    options = (f"batch {bench.batch} / grad_accum {bench.grad_accum}, {bench.precision}, compile {bench.compile}, "
               f"activation checkpointing {bench.activation_checkpointing}, plain model {bench.plain_model}, "
               f"buffer prefetch {bench.prefetch}; {bench.rounds} rounds x {bench.steps} steps after "
               f"{bench.warmup} warm-up steps; data: {N_TASKS} tasks x {task_tokens:,} random tokens")
    print(f"### Throughput per variant, median (min-max) over interleaved rounds ({options})\n")
    print(table_variants(results) + "\n")
    print("### Targets: toolkit overhead, replay cost per trained token, MFU\n")
    print(table_targets(results) + "\n")
    print("### Reptile interpolation (eps=0.1) as a share of k trainer steps\n")
    print(table_reptile(results) + "\n")
    if args.json:
        args.json.write_text(json.dumps({"machine": info, "device": device_line(bench, results).strip(),
                                         "results": results, "args": {k: str(v) for k, v in vars(args).items()}},
                                        indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
