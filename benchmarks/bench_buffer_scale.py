"""Scale of the replay buffer: memory per reference, sampling throughput from disk, checkpoint size/time.

    python benchmarks/bench_buffer_scale.py                      # 5 GB shard, 250M references: 2-4 min
    python benchmarks/bench_buffer_scale.py --tokens 2e8 --refs-per-task 2e6 --steps 10   # quick check
    python benchmarks/bench_buffer_scale.py --keep --dir /scratch --json out.json
    python benchmarks/bench_buffer_scale.py --tokens 5e8 --shards 200     # a task of 200 shard files

At the paper's scale a task is 100B tokens, about 50M sequences of 2048 tokens, and the buffer
(policy `all`) ends up referencing 5 x 50M = 250M of them. This script writes one large synthetic
token shard (`--tokens` uint16 tokens of random ids, 2.5e9 = 5 GB by default, in chunks, to a
temporary dir that is deleted at the end unless `--keep`; with `--shards N` as N files read as one array, as a task
prepared in pieces is) and measures, in one process:

1. memory: a buffer is filled with task 0's real blocks of the shard (every block, in the order a
   `TaskStream` gives them, one step of `--n` blocks per `add`), then with synthetic block ids up to
   `--refs-per-task` per task for `--tasks` tasks (the buffer stores ids only; a reader maps an id to
   a real block of the shard modulo its size). Reported at each checkpoint point (all real blocks,
   one task, all tasks): anonymous resident memory growth (RssAnon of /proc/self/status, which leaves
   out the file pages of the memory-mapped shard) per reference, the peak (VmHWM, reset through
   /proc/self/clear_refs) and the buffer's own arrays. Policies `all` (ids in stream order, and
   sequential ids) and `reservoir` (`--capacity`).
2. sampling: sequences/s of `buffer.sample(n, current_task)` from the `all` buffer at full size (all
   tasks eligible, so draws are uniform over the whole file) with real reads through
   `TaskStream.read` from the memory-mapped shard. Each pass runs `--steps` steps of: sample (timed:
   what the trainer waits for), prefetch (a no-op when off), a simulated compute step of
   `--compute-ms` (sleep). Cold passes first evict the shard from the page cache
   (posix_fadvise DONTNEED on the shard only, checked with fincore; `--drop-caches` uses
   /proc/sys/vm/drop_caches instead); warm passes first read the whole shard once. A cold pass with
   madvise(MADV_RANDOM) on the mapping shows what kernel read-ahead costs. Compared with what one
   H100 consumes training the 560m preset at 40% MFU in bf16 (989e12 x 0.4 / `estimate_flops` train
   FLOPs per token at seq_len 2048, vocab 50304), of which alpha=0.5 replays half. Also the cost of
   one step's `add` + `sample` without reads (a reader returning zeros), for both policies and both
   values of `replay_current_task`, and for a reservoir without the current task once that task
   holds ~90% of the slots (10% eligible).
3. checkpoint: `buffer.state_dict()` (twice in a row: the second call reuses the memory the first
   one's output touched and freed), `torch.save` (with fsync, then the file is evicted from the
   page cache), `torch.load(weights_only=True)`, `load_state_dict` into a fresh buffer, checked
   against the original by a checksum; size on disk, seconds and peak extra memory, at each point,
   for `all` (stream order, sequential) and `reservoir`. A `load_state_dict` whose projected peak
   (bytes per reference measured at a smaller point) would exceed `--mem-limit-gb` is not run; its
   time is extrapolated linearly and marked so.

Tables are Markdown; the machine, date and load average (start, end) are printed with them.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from functools import partial
from pathlib import Path

from buffer_scale_data import VOCAB, ModuloReader, open_tokens, write_shards
from buffer_scale_parts import (
    H100_BF16_PEAK,
    gpu_demand,
    log,
    run_policy,
    sample_passes,
    step_overhead,
)
from buffer_scale_tables import (
    GB,
    MB,
    fmt_n,
    table_checkpoint,
    table_memory,
    table_overhead,
    table_sample,
)
from machine import format_machine, machine_info

from mer.data.stream import TaskStream


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=float, default=2.5e9, help="uint16 tokens of the synthetic shard (2 bytes each)")
    parser.add_argument("--shards", type=int, default=1,
                        help="files the tokens are written as, read as one array like a task of many shards")
    parser.add_argument("--seq-len", type=int, default=2048)
    parser.add_argument("--tasks", type=int, default=5)
    parser.add_argument("--refs-per-task", type=float, default=50e6, help="block ids added per task (paper: ~50M)")
    parser.add_argument("--capacity", type=float, default=10e6, help="reservoir capacity in blocks")
    parser.add_argument("--n", type=int, default=256, help="replay rows per step (and new blocks per add)")
    parser.add_argument("--steps", type=int, default=30, help="sample() steps per sampling pass")
    parser.add_argument("--compute-ms", type=float, default=100.0, help="simulated compute per step (sleep)")
    parser.add_argument("--overhead-steps", type=int, default=20)
    parser.add_argument("--chunk", type=int, default=1 << 20, help="ids per add() for the synthetic part")
    parser.add_argument("--alpha", type=float, default=0.5)
    parser.add_argument("--mfu", type=float, default=0.4)
    parser.add_argument("--mem-limit-gb", type=float, default=12.0,
                        help="skip (and extrapolate) a load_state_dict whose projected peak RSS exceeds this")
    parser.add_argument("--drop-caches", action="store_true",
                        help="evict with /proc/sys/vm/drop_caches (root; whole machine) instead of fadvise on the shard")
    parser.add_argument("--parts", nargs="+", default=["memory", "sample", "overhead", "checkpoint"],
                        choices=["memory", "sample", "overhead", "checkpoint"],
                        help="memory and checkpoint run together (the fill is shared); sample needs the all/stream fill")
    parser.add_argument("--dir", default=None, help="parent of the temporary dir (default: the system's temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary dir with the shard (path printed)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write all raw numbers to this JSON file")
    args = parser.parse_args(argv)
    args.tokens, args.refs_per_task, args.capacity = int(args.tokens), int(args.refs_per_task), int(args.capacity)

    info = machine_info()
    scratch = Path(tempfile.mkdtemp(prefix="mer-bench-buffer-", dir=args.dir))
    free = shutil.disk_usage(scratch).free
    if free < 2 * args.tokens + 3 * 8 * args.refs_per_task * args.tasks:
        shutil.rmtree(scratch, ignore_errors=True)
        raise SystemExit(f"{scratch.parent} has {free / GB:.1f} GB free; lower --tokens (needs {2 * args.tokens / GB:.1f} GB "
                         "for the shard plus room for a raw checkpoint)")
    demand = gpu_demand(args)
    mem_rows, ckpt_rows, sample_rows, overhead_rows, adds = [], [], [], [], {}
    timings = {}
    try:
        log(f"writing {args.tokens:,} tokens ({2 * args.tokens / GB:.1f} GB) in {args.shards} file(s) to {scratch} ...")
        shards, timings["write_s"] = write_shards(scratch, args.tokens, args.shards, args.seed)
        log(f"  {timings['write_s']:.1f} s ({2 * args.tokens / MB / timings['write_s']:.0f} MB/s)")
        stream = TaskStream(open_tokens(shards), args.seq_len, seed=args.seed, task_index=0, name="synthetic")
        reader = ModuloReader(stream)
        n_real = stream.n_blocks
        info["shard"] = (f"{args.tokens:,} uint16 tokens ({2 * args.tokens / GB:.1f} GB) in {args.shards} shard "
                         f"file(s), {n_real:,} blocks of "
                         f"{args.seq_len + 1} tokens, written in {timings['write_s']:.1f} s")
        if args.refs_per_task < n_real:
            raise SystemExit(f"--refs-per-task {args.refs_per_task} is below the shard's {n_real} blocks")
        total = args.refs_per_task * args.tasks
        points = sorted({n_real, args.refs_per_task, total})

        if "memory" in args.parts or "checkpoint" in args.parts or "sample" in args.parts:
            adds["all/stream"] = run_policy("all", "stream", stream, reader, args, scratch, points, mem_rows,
                                            ckpt_rows,
                                            after_fill=partial(sample_passes, stream=stream, shards=shards, args=args,
                                                               sample_rows=sample_rows, timings=timings))
        if "memory" in args.parts or "checkpoint" in args.parts:
            adds["all/sequential"] = run_policy("all", "sequential", stream, reader, args, scratch, points,
                                                mem_rows, ckpt_rows)
            adds["reservoir/stream"] = run_policy("reservoir", "stream", stream, reader, args, scratch, points,
                                                  mem_rows, ckpt_rows)
        if "overhead" in args.parts:
            log("per-step add + sample without reads ...")
            overhead_rows = step_overhead(args, args.seq_len + 1, args.tasks)
        del stream, reader
    finally:
        if args.keep:
            log(f"kept {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)
    info["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]

    shown = " ".join(sys.argv[1:] if argv is None else argv)
    print(f"## Replay buffer at scale (python benchmarks/bench_buffer_scale.py {shown})\n".replace(" )", ")"))
    print(format_machine(info, f"; shard: {info.get('shard')}") + "\n")
    print(f"GPU demand: 560m preset at vocab {VOCAB}: {demand['params'] / 1e6:.1f}M parameters "
          f"({demand['params_nonemb'] / 1e6:.1f}M non-embedding), {demand['train_flops_per_token'] / 1e9:.3f} GFLOP "
          f"per trained token (`estimate_flops`, seq_len {args.seq_len}); one H100 at {args.mfu:.0%} MFU of "
          f"{H100_BF16_PEAK / 1e12:.0f} TFLOP/s bf16: {demand['tokens_s']:,.0f} tokens/s = {demand['seq_s']:.1f} sequences/s, of which "
          f"alpha={args.alpha} replays {demand['replay_seq_s']:.1f}/s; a step of {demand['batch']} sequences "
          f"({args.n} replayed) takes {demand['step_s']:.1f} s.\n")
    if mem_rows:
        print("### Memory: anonymous RSS growth while adding references (policy all: every block; reservoir: "
              f"capacity {fmt_n(args.capacity)})\n")
        print(table_memory(mem_rows) + "\n")
        for key, value in adds.items():
            print(f"- {key}: add() of one step ({args.n} ids) takes {value['add_us_per_step_median']:.1f} us "
                  f"(median of {value['add_calls']:,} calls)")
        print()
    if sample_rows:
        print(f"### Sampling: buffer.sample({args.n}, task) from the all/stream buffer at {fmt_n(total)} references, "
              f"real reads from the {2 * args.tokens / GB:.1f} GB memory-mapped shard, {args.steps} steps per pass, "
              f"{args.compute_ms:.0f} ms simulated compute per step\n")
        print(table_sample(sample_rows, demand, args) + "\n")
        print(f"The draw alone (reads replaced by zeros) costs {timings['draw_only_ms']:.2f} ms per sample; "
              f"reading the whole shard once (warm-up) took {timings.get('warm_read_s', float('nan')):.1f} s.\n")
    if overhead_rows:
        print(f"### Per-step buffer work without reads: add({args.n} ids of the current task) + sample({args.n}), "
              f"{args.overhead_steps} steps\n")
        print(table_overhead(overhead_rows, demand) + "\n")
    if ckpt_rows:
        print("### Checkpoint of the buffer state (torch.save of state_dict(); the file is evicted from the page "
              "cache before torch.load(weights_only=True) + load_state_dict into a fresh buffer)\n")
        print(table_checkpoint(ckpt_rows) + "\n")
    if args.json:
        args.json.write_text(json.dumps({"machine": info, "demand": demand, "memory": mem_rows, "adds": adds,
                                         "sample": sample_rows, "overhead": overhead_rows, "checkpoint": ckpt_rows,
                                         "timings": timings, "args": {k: str(v) for k, v in vars(args).items()}},
                                        indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
