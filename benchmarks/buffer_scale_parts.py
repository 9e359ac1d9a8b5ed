"""bench_buffer_scale.py's measured parts: a buffer filled to paper scale with memory and checkpoints at
each point (`run_policy`), sampling from it with real reads from the shard (`sample_passes`), the
per-step add + sample work without reads (`step_overhead`), and what one H100 would demand
(`gpu_demand`)."""

from __future__ import annotations

import mmap
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from buffer_scale_checkpoint import checkpoint_load, checkpoint_save
from buffer_scale_data import VOCAB, ZeroReader, affine_perm, madvise_tokens, open_tokens, task_chunks
from buffer_scale_tables import fmt_bytes, fmt_n
from page_cache import evict, resident_fraction, warm
from process_memory import mem, reset_peak

from mer.compute.flops import estimate_flops
from mer.compute.mfu import peak_flops_from_table
from mer.data.stream import TaskStream
from mer.model.llama import PRESETS, estimate_parameters
from mer.replay.buffer import BufferConfig, ReplayBuffer

H100_BF16_PEAK = peak_flops_from_table("NVIDIA H100 80GB HBM3", "bf16")  # SXM, dense


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def fill(buffer: ReplayBuffer, stream: TaskStream, args, order: str, points: list[int], on_point) -> dict:
    """Add task 0's real blocks (one step of args.n per add), then synthetic ids; call on_point(buffer)
    at every checkpoint point. Returns the per-step add timing of the real part."""
    n_real, per_task = stream.n_blocks, args.refs_per_task
    add_times = []
    if order == "stream":
        stream.position = 0
        for _ in range(0, n_real, args.n):
            ids = stream.next_block_ids(min(args.n, n_real - stream.position))
            started = time.perf_counter()
            buffer.add(0, ids)
            add_times.append(time.perf_counter() - started)
    else:
        for start in range(0, n_real, args.n):
            ids = np.arange(start, min(start + args.n, n_real), dtype=np.int64)
            started = time.perf_counter()
            buffer.add(0, ids)
            add_times.append(time.perf_counter() - started)
    on_point(buffer)
    for task in range(args.tasks):
        for ids in task_chunks(task, n_real, per_task, order, args.chunk):
            buffer.add(task, ids)
        if buffer.n_seen in points:
            on_point(buffer)
    return {"add_us_per_step_median": 1e6 * statistics.median(add_times), "add_calls": len(add_times)}


def memory_row(buffer: ReplayBuffer, policy: str, order: str, base: dict) -> dict:
    now = mem(trim=True)
    refs_alloc = buffer._refs.nbytes + buffer._rows.nbytes  # the buffer's arrays (allocated, incl. slack)
    return {"policy": policy, "order": order, "seen": buffer.n_seen, "held": len(buffer),
            "anon_growth": now["RssAnon"] - base["RssAnon"], "peak_extra": mem()["VmHWM"] - base["VmRSS"],
            "arrays_alloc": refs_alloc, "arrays_held": 8 * len(buffer)}


def checkpoint(buffer: ReplayBuffer, cfg: BufferConfig, reader, scratch: Path, args, lsd_rate: dict) -> dict:
    path = scratch / "buffer.pt"
    saved = checkpoint_save(buffer, path)
    loaded = checkpoint_load(cfg, reader, 0, path, saved, args, lsd_rate["bytes_per_ref"])
    if loaded.get("load_state_dict_s") is not None and saved["held"] >= 1_000_000:
        lsd_rate["bytes_per_ref"] = loaded["lsd_peak_extra"] / saved["held"] * 1.1  # 10% margin
        lsd_rate["s_per_ref"] = loaded["load_state_dict_s"] / saved["held"]
    os.remove(path)
    log(f"  checkpoint at {fmt_n(saved['held'])} held: {fmt_bytes(saved['bytes'])}, "
        f"save {saved['save_s']:.2f} s, load_state_dict {loaded.get('load_state_dict_s')}")
    return {**saved, **loaded}


def run_policy(policy: str, order: str, stream: TaskStream, reader, args, scratch: Path, points: list[int],
               mem_rows: list, ckpt_rows: list, after_fill=None) -> dict:
    cfg = BufferConfig(policy=policy, capacity=args.capacity if policy == "reservoir" else None)
    log(f"{policy}/{order}: filling to {fmt_n(points[-1])} references ...")
    stream.position = 0
    stream.next_block_ids(1)  # the stream's own order of its blocks (8 bytes a block) exists before the baseline
    stream.position = 0
    base = mem(trim=True)
    reset_peak()
    buffer = ReplayBuffer(cfg, reader, seed=0)
    lsd_rate = {"bytes_per_ref": None, "s_per_ref": None}
    pending_final: list = []

    # Handed the buffer by fill(), not closed over: with the `del buffer` below, pyflakes reads a closure's use
    # of it as an undefined name (F821).
    def on_point(buffer: ReplayBuffer) -> None:
        seen = buffer.n_seen
        mem_rows.append(memory_row(buffer, policy, order, base))
        log(f"  {fmt_n(seen)} seen: RssAnon +{fmt_bytes(mem_rows[-1]['anon_growth'])}")
        if seen == points[-1]:
            pending_final.append(seen)  # the last checkpoint runs after the sampling part
            return
        row = checkpoint(buffer, cfg, reader, scratch, args, lsd_rate)
        ckpt_rows.append({"policy": policy, "order": order, **row})
        reset_peak()

    info = fill(buffer, stream, args, order, points, on_point)
    if after_fill is not None:
        after_fill(buffer)
    saved = checkpoint_save(buffer, scratch / "buffer.pt")
    log(f"  final checkpoint saved ({fmt_bytes(saved['bytes'])}); releasing the buffer before loading it back")
    cfg_copy = BufferConfig(**{**buffer.cfg.__dict__, "prefetch": False})
    del buffer  # the original is gone before the load: only the loaded copy is in memory
    loaded = checkpoint_load(cfg_copy, reader, 0, scratch / "buffer.pt", saved, args, lsd_rate["bytes_per_ref"])
    row = {"policy": policy, "order": order, **saved, **loaded}
    if loaded.get("skipped") and lsd_rate["s_per_ref"]:
        row["lsd_extrapolated"] = lsd_rate["s_per_ref"] * saved["held"]
        row["lsd_projected_extra"] = lsd_rate["bytes_per_ref"] * saved["held"]
    ckpt_rows.append(row)
    os.remove(scratch / "buffer.pt")
    return info


def sample_pass(buffer: ReplayBuffer, n: int, task: int, steps: int, compute_s: float, prefetch: bool) -> list[float]:
    """Seconds the trainer waits in sample() per step (prefetch, if on, issued right after, as the trainer does)."""
    buffer.cfg.prefetch = prefetch
    buffer.prefetch(n, task)  # the first step's draw is prefetched too (a no-op when off)
    waits = []
    for _ in range(steps):
        started = time.perf_counter()
        refs, tokens = buffer.sample(n, task)
        waits.append(time.perf_counter() - started)
        assert tokens.shape[0] == n
        buffer.prefetch(n, task)
        if compute_s:
            time.sleep(compute_s)
    buffer.sample(n, task)  # consume a pending prefetch, untimed
    buffer.cfg.prefetch = False
    return waits


def sample_passes(buffer: ReplayBuffer, stream: TaskStream, shards: list[Path], args, sample_rows: list,
                  timings: dict) -> None:
    """The sampling part, run on the all/stream buffer once it is full: cold and warm passes of
    `sample_pass` over the shards (rows appended to `sample_rows`), then the draw alone without reads
    (`timings["draw_only_ms"]`). main binds all but the buffer with functools.partial and hands it to
    `run_policy` as `after_fill` (a closure over main's `stream`, which main deletes before it returns,
    reads to pyflakes as an undefined name)."""
    if "sample" not in args.parts:
        return
    current = args.tasks  # training on the task after the last one added: every held block eligible
    compute = args.compute_ms / 1e3
    passes = [("cold", "default", False), ("cold", "default", True), ("cold", "MADV_RANDOM", False),
              ("warm", "default", False), ("warm", "default", True)]
    buffer.sample(args.n, current)  # first-call costs, untimed
    for cache, mapping, prefetch in passes:
        if cache == "cold":
            # A fresh mapping first: pages still mapped by the old one would survive the eviction.
            stream.tokens = open_tokens(shards)
            for shard in shards:
                evict(shard, args.drop_caches)
        elif not sample_rows or sample_rows[-1]["cache"] != "warm":
            timings["warm_read_s"] = sum(warm(shard) for shard in shards)
        fractions = [resident_fraction(shard) for shard in shards]
        resident = None if None in fractions else float(np.mean(fractions))
        if mapping == "MADV_RANDOM":
            madvise_tokens(stream.tokens, mmap.MADV_RANDOM)
        log(f"sampling: {cache} cache, {mapping}, prefetch {'on' if prefetch else 'off'} "
            f"(resident {resident}) ...")
        waits = sample_pass(buffer, args.n, current, args.steps, compute, prefetch)
        if mapping == "MADV_RANDOM":
            madvise_tokens(stream.tokens, mmap.MADV_NORMAL)
        sample_rows.append({"cache": cache, "mapping": mapping, "prefetch": prefetch, "resident": resident,
                            "waits": waits})
        log(f"  median wait {1e3 * statistics.median(waits):.2f} ms/step")
    # The draw alone (no reads) at this size, for reference.
    real_reader, buffer.reader = buffer.reader, ZeroReader(args.seq_len + 1)
    started = time.perf_counter()
    for _ in range(args.steps):
        buffer.sample(args.n, current)
    timings["draw_only_ms"] = 1e3 * (time.perf_counter() - started) / args.steps
    buffer.reader = real_reader


def step_overhead(args, block_len: int, current_task: int) -> list[dict]:
    """add(n ids) + sample(n) per step without reads, at full size, for both policies and replay_current_task;
    for a reservoir without the current task also once the current task holds ~90% of the slots (the
    draw rejects most candidates there)."""
    rows = []
    for policy, rct, current_share in (("all", True, 0), ("all", False, 0), ("reservoir", True, 0),
                                       ("reservoir", False, 0), ("reservoir", False, 0.9)):
        cfg = BufferConfig(policy=policy, capacity=args.capacity if policy == "reservoir" else None,
                           replay_current_task=rct)
        buffer = ReplayBuffer(cfg, ZeroReader(block_len), seed=0)
        # Filled past capacity (reservoir) or to a modest size (all: cost is O(tasks), not O(size)).
        fill_to = args.capacity + args.capacity // 2 if policy == "reservoir" else 4 * args.capacity // 10
        per_task = fill_to // current_task
        for task in range(current_task):
            for start in range(0, per_task, args.chunk):
                buffer.add(task, affine_perm(0, per_task, start, min(start + args.chunk, per_task)))
        # The current task's share of a reservoir after s more of its blocks is about s / (fill_to + s).
        more = int(fill_to * current_share / (1 - current_share)) if current_share else 0
        for start in range(0, more, args.chunk):
            buffer.add(current_task, np.arange(start, min(start + args.chunk, more), dtype=np.int64))
        times = []
        for step in range(args.overhead_steps):
            started = time.perf_counter()
            buffer.add(current_task, np.arange(step * args.n, (step + 1) * args.n, dtype=np.int64))
            buffer.sample(args.n, current_task)
            times.append(time.perf_counter() - started)
        rows.append({"policy": policy, "replay_current_task": rct, "held": len(buffer),
                     "eligible": buffer.n_eligible(current_task) / len(buffer),
                     "ms_per_step": 1e3 * statistics.median(times), "ms_max": 1e3 * max(times)})
        del buffer
    return rows


def gpu_demand(args) -> dict:
    cfg = PRESETS["560m"]
    total, nonemb = estimate_parameters(cfg, VOCAB)
    rates = estimate_flops(total, nonemb, cfg.n_layer, args.seq_len, cfg.d_model, VOCAB)
    tokens_s = H100_BF16_PEAK * args.mfu / rates.train_per_token
    seq_s = tokens_s / args.seq_len
    replay_s = args.alpha * seq_s
    batch = round(args.n / args.alpha)  # global batch whose replay rows are n
    return {"params": total, "params_nonemb": nonemb, "train_flops_per_token": rates.train_per_token,
            "tokens_s": tokens_s, "seq_s": seq_s, "replay_seq_s": replay_s, "batch": batch,
            "step_s": batch / seq_s}
