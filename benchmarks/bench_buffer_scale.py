"""Scale of the replay buffer: memory per reference, sampling throughput from disk, checkpoint size/time.

    python benchmarks/bench_buffer_scale.py                      # 5 GB shard, 250M references: 2-4 min
    python benchmarks/bench_buffer_scale.py --tokens 2e8 --refs-per-task 2e6 --steps 10   # quick check
    python benchmarks/bench_buffer_scale.py --keep --dir /scratch --json out.json

At the paper's scale a task is 100B tokens, about 50M sequences of 2048 tokens, and the buffer
(policy `all`) ends up referencing 5 x 50M = 250M of them. This script writes one large synthetic
token shard (`--tokens` uint16 tokens of random ids, 2.5e9 = 5 GB by default, in chunks, to a
temporary dir that is deleted at the end unless `--keep`) and measures, in one process:

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
import ctypes
import json
import math
import mmap
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from machine import format_machine, machine_info

from mer.compute.flops import estimate_flops
from mer.compute.mfu import peak_flops_from_table
from mer.data.stream import TaskStream
from mer.model.llama import PRESET_VOCAB, PRESETS, estimate_parameters
from mer.replay.buffer import BufferConfig, ReplayBuffer

MB, GB = 1e6, 1e9
VOCAB = PRESET_VOCAB["560m"]
H100_BF16_PEAK = peak_flops_from_table("NVIDIA H100 80GB HBM3", "bf16")  # SXM, dense


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------ memory
try:
    _LIBC = ctypes.CDLL("libc.so.6")
    # A fixed mmap threshold (glibc raises it dynamically up to 32 MB otherwise): freed numpy arrays of
    # the add() chunks go back to the OS instead of staying in the heap and showing up as buffer memory.
    _LIBC.mallopt(-3, 128 * 1024)  # M_MMAP_THRESHOLD
except (OSError, AttributeError):
    _LIBC = None


def mem(trim: bool = False) -> dict:
    """RssAnon (anonymous resident bytes: numpy arrays, not the mapped shard) and VmHWM (peak RSS);
    `trim` first returns free heap memory to the OS (glibc malloc_trim) so RssAnon counts live data."""
    if trim and _LIBC is not None:
        _LIBC.malloc_trim(0)
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, value = line.split(":", 1)
            if key in ("RssAnon", "VmHWM", "VmRSS", "RssFile"):
                out[key] = int(value.split()[0]) * 1024
    return out


def reset_peak() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); False where not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


class Peak:
    """Peak RSS growth over a block of code, from VmHWM after a reset (file pages excluded at the start)."""

    def __enter__(self) -> Peak:
        reset_peak()
        self.start = mem()
        return self

    def __exit__(self, *exc) -> None:
        end = mem()
        self.extra = end["VmHWM"] - self.start["VmRSS"]  # bytes above the RSS at the start
        self.anon_growth = end["RssAnon"] - self.start["RssAnon"]


# ------------------------------------------------------------------------------------------ page cache
def resident_fraction(path: Path) -> float | None:
    """Share of the file in the page cache (util-linux fincore), None if unavailable."""
    try:
        out = subprocess.run(["fincore", "--bytes", "--noheadings", "--raw", "--output", "RES", str(path)],
                             capture_output=True, text=True, timeout=60).stdout.split()
        return int(out[0]) / os.path.getsize(path)
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None


def evict(path: Path, global_drop: bool) -> None:
    """Drop the file's clean pages from the page cache (only this file unless `global_drop`)."""
    if global_drop:
        os.sync()
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("1")
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def warm(path: Path) -> float:
    """Read the whole file once (into the page cache); seconds."""
    started = time.perf_counter()
    with open(path, "rb", buffering=0) as f:
        while f.read(64 << 20):
            pass
    return time.perf_counter() - started


# ------------------------------------------------------------------------------------------ data
def write_shard(path: Path, n_tokens: int, seed: int, chunk: int = 1 << 26) -> float:
    """n_tokens random uint16 token ids (< VOCAB) written in chunks; seconds (including fsync)."""
    rng = np.random.default_rng(seed)
    started = time.perf_counter()
    with open(path, "wb") as f:
        for start in range(0, n_tokens, chunk):
            rng.integers(0, VOCAB, size=min(chunk, n_tokens - start), dtype=np.uint16).tofile(f)
        f.flush()
        os.fsync(f.fileno())
    return time.perf_counter() - started


class ModuloReader:
    """BlockReader over ONE real shard for every task: block b of task t is block (b + t*stride) mod n_blocks."""

    def __init__(self, stream: TaskStream) -> None:
        self.stream, self.n_blocks = stream, stream.n_blocks
        self.stride = stream.n_blocks // 5 + 7919  # tasks start at different places of the file

    def read_blocks(self, task_index: int, block_ids: np.ndarray) -> np.ndarray:
        ids = (np.asarray(block_ids, dtype=np.int64) + task_index * self.stride) % self.n_blocks  # [m]
        return self.stream.read(ids)  # [m, seq_len + 1]


class ZeroReader:
    """BlockReader returning zeros: times the buffer's own work (draw, bookkeeping) without reads."""

    def __init__(self, block_len: int) -> None:
        self.block_len = block_len

    def read_blocks(self, task_index: int, block_ids: np.ndarray) -> np.ndarray:
        return np.zeros((len(block_ids), self.block_len), dtype=np.uint16)


def affine_perm(lo: int, hi: int, start: int, stop: int) -> np.ndarray:
    """Positions [start, stop) of a fixed pseudo-random permutation of [lo, hi) (i -> a*i + c mod m):
    ids in a shuffled order like a stream's, without materialising a 50M permutation."""
    m = hi - lo
    a = int(m * 0.6180339887) | 1
    while math.gcd(a, m) != 1:
        a += 2
    i = np.arange(start, stop, dtype=np.int64)
    return lo + (a * i + 12345) % m


def task_chunks(task: int, n_real: int, per_task: int, order: str, chunk: int):
    """Block ids of the synthetic part of `task` in chunks: task 0 from n_real on (its real blocks are
    added before), other tasks from 0; `order` 'stream' (shuffled) or 'sequential'."""
    lo = n_real if task == 0 else 0
    for start in range(0, per_task - lo, chunk):
        stop = min(start + chunk, per_task - lo)
        if order == "sequential":
            yield np.arange(lo + start, lo + stop, dtype=np.int64)
        else:
            yield affine_perm(lo, per_task, start, stop)


def held(buffer: ReplayBuffer) -> np.ndarray:
    """A view (not a copy: `refs()` would copy 2 GB at 250M) of the held references."""
    return buffer._refs[: len(buffer)]


def checksum(refs: np.ndarray, chunk: int = 1 << 24) -> int:
    """Order-sensitive checksum of int64 [n] in chunks (no full-size temporaries)."""
    total = 0
    for start in range(0, refs.shape[0], chunk):
        part = refs[start:start + chunk]
        weights = np.arange(start + 1, start + 1 + part.shape[0], dtype=np.int64)
        total = (total + int(np.sum(part * weights, dtype=np.int64))) % (1 << 61)
    return total


# ------------------------------------------------------------------------------------------ parts
def fill(buffer: ReplayBuffer, stream: TaskStream, args, order: str, points: list[int], on_point) -> dict:
    """Add task 0's real blocks (one step of args.n per add), then synthetic ids; call on_point(n_seen)
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
    on_point(buffer.n_seen)
    for task in range(args.tasks):
        for ids in task_chunks(task, n_real, per_task, order, args.chunk):
            buffer.add(task, ids)
        if buffer.n_seen in points:
            on_point(buffer.n_seen)
    return {"add_us_per_step_median": 1e6 * statistics.median(add_times), "add_calls": len(add_times)}


def memory_row(buffer: ReplayBuffer, policy: str, order: str, base: dict) -> dict:
    now = mem(trim=True)
    refs_alloc = buffer._refs.nbytes + buffer._rows.nbytes  # the buffer's arrays (allocated, incl. slack)
    return {"policy": policy, "order": order, "seen": buffer.n_seen, "held": len(buffer),
            "anon_growth": now["RssAnon"] - base["RssAnon"], "peak_extra": mem()["VmHWM"] - base["VmRSS"],
            "arrays_alloc": refs_alloc, "arrays_held": 8 * len(buffer)}


def checkpoint_save(buffer: ReplayBuffer, path: Path) -> dict:
    """state_dict + torch.save (fsync) of the buffer; times, size, peak extra memory, checksum."""
    with Peak() as peak:
        started = time.perf_counter()
        state = buffer.state_dict()
        t_state = time.perf_counter() - started
        # Again at once: the first call's output memory is fresh (first-touch page faults, which on a VM can
        # cost seconds per GB when the host has taken the pages back); the second reuses the pages just freed.
        del state
        started = time.perf_counter()
        state = buffer.state_dict()
        t_state_again = time.perf_counter() - started
        started = time.perf_counter()
        torch.save(state, path)
        fd = os.open(path, os.O_RDONLY)
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)  # the load below reads from disk
        os.close(fd)
        t_save = time.perf_counter() - started
        encoding = "runs" if state["refs"]["run_lengths"] is not None else "raw"
        n_values = int(state["refs"]["values"].numel())
        del state
    return {"held": len(buffer), "seen": buffer.n_seen, "bytes": os.path.getsize(path), "encoding": encoding,
            "n_values": n_values, "state_dict_s": t_state, "state_dict_again_s": t_state_again, "save_s": t_save,
            "save_peak_extra": peak.extra, "checksum": checksum(held(buffer))}


def checkpoint_load(cfg: BufferConfig, reader, seed: int, path: Path, saved: dict, args,
                    load_bytes_per_ref: float | None) -> dict:
    """torch.load(weights_only=True) + load_state_dict into a fresh buffer, unless projected too big."""
    out = {}
    with Peak() as peak:
        started = time.perf_counter()
        state = torch.load(path, weights_only=True)
        out["load_s"] = time.perf_counter() - started
        projected = mem()["VmRSS"] + (load_bytes_per_ref or 0) * saved["held"]
        out["projected_peak"] = projected if load_bytes_per_ref else None
        if load_bytes_per_ref and projected > args.mem_limit_gb * GB:
            out["load_state_dict_s"] = None  # filled in by extrapolation
            out["skipped"] = f"projected peak {projected / GB:.1f} GB > --mem-limit-gb {args.mem_limit_gb}"
            del state
        else:
            with Peak() as inner:
                fresh = ReplayBuffer(cfg, reader, seed)
                started = time.perf_counter()
                fresh.load_state_dict(state)
                out["load_state_dict_s"] = time.perf_counter() - started
            out["lsd_peak_extra"] = inner.extra
            out["ok"] = len(fresh) == saved["held"] and checksum(held(fresh)) == saved["checksum"]
            del state, fresh
    out["load_peak_extra"] = peak.extra
    return out


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


# ------------------------------------------------------------------------------------------ tables
def fmt_bytes(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x / GB:.2f} GB" if abs(x) >= GB else f"{x / MB:.1f} MB" if abs(x) >= MB else f"{x / 1e3:.1f} kB"


def fmt_n(n: int) -> str:
    return f"{n / 1e6:.1f}M" if n >= 1e6 else f"{n:,}"


def table_memory(rows: list[dict]) -> str:
    out = ["| policy | id order | refs seen | refs held | RssAnon growth | bytes/ref seen (RSS) | bytes/ref held (RSS) "
           "| peak extra RSS | peak bytes/ref held | buffer arrays (allocated) | arrays bytes/ref held |",
           "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        out.append(f"| {r['policy']} | {r['order']} | {fmt_n(r['seen'])} | {fmt_n(r['held'])} | "
                   f"{fmt_bytes(r['anon_growth'])} | {r['anon_growth'] / r['seen']:.2f} | "
                   f"{r['anon_growth'] / r['held']:.2f} | {fmt_bytes(r['peak_extra'])} | "
                   f"{r['peak_extra'] / r['held']:.1f} | {fmt_bytes(r['arrays_alloc'])} | "
                   f"{r['arrays_alloc'] / r['held']:.2f} |")
    return "\n".join(out)


def table_sample(rows: list[dict], demand: dict, args) -> str:
    # Under data parallelism a rank reads only its own replay rows, so one GPU's demand is also a rank's.
    need1 = demand["replay_seq_s"]
    out = [f"| cache | mapping | prefetch | shard resident before | sample() wait ms/step, median (min-max) | "
           f"sequences/s read (prefetch off) | headroom vs 1 H100, also per rank ({need1:.1f} replay seq/s) |",
           "| --- | --- | --- | ---: | ---: | ---: | ---: |"]
    for r in rows:
        w = r["waits"]
        med = statistics.median(w)
        resident = "-" if r["resident"] is None else f"{100 * r['resident']:.0f}%"
        if r["prefetch"]:  # the read overlaps the simulated compute: the wait is what is left of it
            rate = f"read overlapped ({100 * med / (med + args.compute_ms / 1e3):.2f}% of the step waits)"
            head1 = "-"
        else:
            seq_s = args.n / med
            rate, head1 = f"{seq_s:,.0f}", f"{seq_s / need1:,.0f}x"
        out.append(f"| {r['cache']} | {r['mapping']} | {'on' if r['prefetch'] else 'off'} | {resident} | "
                   f"{1e3 * med:.2f} ({1e3 * min(w):.2f}-{1e3 * max(w):.2f}) | {rate} | {head1} |")
    return "\n".join(out)


def table_overhead(rows: list[dict], demand: dict) -> str:
    out = ["| policy | replay_current_task | refs held | eligible | add + sample (no reads) ms/step, median | max | "
           "share of a 1-H100 step |", "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        out.append(f"| {r['policy']} | {r['replay_current_task']} | {fmt_n(r['held'])} | {r['eligible']:.0%} | "
                   f"{r['ms_per_step']:.2f} | "
                   f"{r['ms_max']:.2f} | {r['ms_per_step'] / 1e3 / demand['step_s']:.4%} |")
    return "\n".join(out)


def table_checkpoint(rows: list[dict]) -> str:
    out = ["| policy | id order | refs seen | refs held | encoding (values stored) | file size | bytes/ref held | "
           "state_dict s (again at once) | torch.save + fsync s | torch.load s | load_state_dict s | "
           "peak extra RSS save | peak extra RSS load | round trip |",
           "| --- | --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for r in rows:
        lsd = r.get("load_state_dict_s")
        lsd_txt = f"{lsd:.2f}" if lsd is not None and not r.get("skipped") else (
            f"~{r['lsd_extrapolated']:.1f} (extrapolated, not run: {r['skipped']})" if r.get("skipped") else "-")
        peak_load = r.get("load_peak_extra")
        if r.get("skipped") and r.get("lsd_projected_extra"):
            peak_txt = f"{fmt_bytes(peak_load)} (torch.load only; ~{fmt_bytes(r['lsd_projected_extra'])} projected with load_state_dict)"
        else:
            peak_txt = fmt_bytes(peak_load)
        ok = "-" if "ok" not in r else ("ok" if r["ok"] else "MISMATCH")
        out.append(f"| {r['policy']} | {r['order']} | {fmt_n(r['seen'])} | {fmt_n(r['held'])} | {r['encoding']} "
                   f"({fmt_n(r['n_values'])}) | {fmt_bytes(r['bytes'])} | {r['bytes'] / r['held']:.2f} | "
                   f"{r['state_dict_s']:.2f} ({r['state_dict_again_s']:.2f}) | {r['save_s']:.2f} | {r['load_s']:.2f} | {lsd_txt} | "
                   f"{fmt_bytes(r['save_peak_extra'])} | {peak_txt} | {ok} |")
    return "\n".join(out)


# ------------------------------------------------------------------------------------------ main
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

    def on_point(seen: int) -> None:
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=float, default=2.5e9, help="uint16 tokens of the synthetic shard (2 bytes each)")
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
    shard = scratch / "train.bin"
    demand = gpu_demand(args)
    mem_rows, ckpt_rows, sample_rows, overhead_rows, adds = [], [], [], [], {}
    timings = {}
    try:
        log(f"writing {args.tokens:,} tokens ({2 * args.tokens / GB:.1f} GB) to {shard} ...")
        timings["write_s"] = write_shard(shard, args.tokens, args.seed)
        log(f"  {timings['write_s']:.1f} s ({2 * args.tokens / MB / timings['write_s']:.0f} MB/s)")
        stream = TaskStream(np.memmap(shard, dtype=np.uint16, mode="r"), args.seq_len, seed=args.seed, task_index=0, name="synthetic")
        reader = ModuloReader(stream)
        n_real = stream.n_blocks
        info["shard"] = (f"{args.tokens:,} uint16 tokens ({2 * args.tokens / GB:.1f} GB), {n_real:,} blocks of "
                         f"{args.seq_len + 1} tokens, written in {timings['write_s']:.1f} s")
        if args.refs_per_task < n_real:
            raise SystemExit(f"--refs-per-task {args.refs_per_task} is below the shard's {n_real} blocks")
        total = args.refs_per_task * args.tasks
        points = sorted({n_real, args.refs_per_task, total})

        def sampling(buffer: ReplayBuffer) -> None:
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
                    stream.tokens = np.memmap(shard, dtype=np.uint16, mode="r")
                    evict(shard, args.drop_caches)
                elif not sample_rows or sample_rows[-1]["cache"] != "warm":
                    timings["warm_read_s"] = warm(shard)
                resident = resident_fraction(shard)
                if mapping == "MADV_RANDOM":
                    stream.tokens._mmap.madvise(mmap.MADV_RANDOM)
                log(f"sampling: {cache} cache, {mapping}, prefetch {'on' if prefetch else 'off'} "
                    f"(resident {resident}) ...")
                waits = sample_pass(buffer, args.n, current, args.steps, compute, prefetch)
                if mapping == "MADV_RANDOM":
                    stream.tokens._mmap.madvise(mmap.MADV_NORMAL)
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

        if "memory" in args.parts or "checkpoint" in args.parts or "sample" in args.parts:
            adds["all/stream"] = run_policy("all", "stream", stream, reader, args, scratch, points, mem_rows,
                                            ckpt_rows, after_fill=sampling)
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
