"""Data preparation and block-read throughput on the real built-in data (the default five Bibles).

    python benchmarks/bench_data.py                 # default: about 1-2 minutes on 2 quiet cores
    python benchmarks/bench_data.py --rounds 5 --json out.json

What it measures, all in one process, on a fresh temporary data dir:

1. `prepare_data(DataConfig(data_dir=tmp))` end to end, cold (corpus reading + BPE training + sharding)
   and again warm (everything cached: the cost every run pays at start-up).
2. BPE training time of the default tokenizer config (`train_bpe` on the default five corpora).
3. Sharding throughput per language: `mer.data.shards.write_split` (tokenize + flatten + write) of the
   task's training documents with the already-trained tokenizer, in MB of UTF-8 text per second,
   next to the tokenizer call alone on the same batches (so the rest of write_split shows as the
   difference). Documents are read into memory first; reading the Bible packages is timed apart.
4. Random block reads: `TaskStream.read` of uniformly random block ids from the English train shard,
   `--read-batch` ids per call (one step's worth by default), at seq_len 128 and 2048, in blocks/s
   and MB/s, next to a plain numpy reference (slice each block, stack). The shard is in the page
   cache (it was just written), so this is memory bandwidth plus indexing overhead, not disk.

Every comparison is interleaved: each round runs every variant once, in an order that rotates from
round to round; tables report the median over rounds (and the min-max spread). The machine, torch
threads and the load average (start and end) are printed, since the cores may be shared.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from machine import format_machine, machine_info
from rounds import rotated, spread

from mer.data.config import DataConfig, TokenizerConfig
from mer.data.pipeline import build_corpus, prepare_data
from mer.data.shards import _batches, token_dtype, write_split
from mer.data.stream import TaskStream
from mer.data.tokenizer import train_bpe

MB = 1e6


# ------------------------------------------------------------------------------------------ parts
def bench_prepare(data_dir: Path) -> tuple[object, dict]:
    started = time.perf_counter()
    prepared = prepare_data(DataConfig(data_dir=str(data_dir)))
    cold = time.perf_counter() - started
    started = time.perf_counter()
    prepare_data(DataConfig(data_dir=str(data_dir)))
    warm = time.perf_counter() - started
    # (The manifest no longer records a preparation time: it is the same bytes whoever prepared it.)
    return prepared, {"cold_s": cold, "warm_s": warm}


def bench_bpe(corpora: list, rounds: int, scratch: Path) -> dict:
    cfg = TokenizerConfig()
    chars = sum(min(cfg.train_chars_per_task, sum(len(d) for d in c.train_documents())) for c in corpora)
    times = []
    for r in range(rounds):
        out = scratch / f"bpe-{r}"
        out.mkdir()
        started = time.perf_counter()
        train_bpe(corpora, cfg, out)
        times.append(time.perf_counter() - started)
        shutil.rmtree(out)
    return {"seconds": times, "train_chars": chars, "vocab_size": cfg.vocab_size,
            "chars_per_task": cfg.train_chars_per_task}


def _tokenize_only(documents: list[str], tokenizer) -> int:
    n = 0
    for batch in _batches(documents, 256):
        encoded = tokenizer([piece for piece, _ in batch], add_special_tokens=False)["input_ids"]
        n += sum(len(ids) + last for ids, (_, last) in zip(encoded, batch, strict=True))
    return n


def bench_write_split(corpora: list, tokenizer, rounds: int, scratch: Path) -> dict:
    dtype = token_dtype(len(tokenizer))
    docs, read_s, nbytes = {}, {}, {}
    for corpus in corpora:
        started = time.perf_counter()
        docs[corpus.name] = list(corpus.train_documents())
        read_s[corpus.name] = time.perf_counter() - started
        nbytes[corpus.name] = sum(len(d.encode("utf-8")) for d in docs[corpus.name])
    variants = [(name, kind) for name in docs for kind in ("write_split", "tokenize")]
    times: dict[tuple[str, str], list[float]] = {v: [] for v in variants}
    tokens = {}
    for r in range(rounds):
        for name, kind in rotated(variants, r * 3):
            path = scratch / f"{name}.bin"
            started = time.perf_counter()
            if kind == "write_split":
                tokens[name] = write_split(docs[name], tokenizer, path, dtype)["tokens"]
            else:
                _tokenize_only(docs[name], tokenizer)
            times[(name, kind)].append(time.perf_counter() - started)
            path.unlink(missing_ok=True)
    return {"bytes": nbytes, "documents": {n: len(d) for n, d in docs.items()}, "tokens": tokens,
            "read_s": read_s, "times": {f"{n}/{k}": t for (n, k), t in times.items()}}


def _read_reference(tokens: np.ndarray, seq_len: int, ids: np.ndarray) -> np.ndarray:
    """Plain numpy: slice every block and stack them."""
    return np.stack([tokens[i * seq_len: i * seq_len + seq_len + 1] for i in ids])


def bench_reads(tokens: np.ndarray, seq_lens: list[int], batch: int, calls: int, rounds: int, seed: int) -> dict:
    streams = {T: TaskStream(tokens, T, seed, name="en") for T in seq_lens}
    rng = np.random.default_rng(seed)
    variants = [(T, kind) for T in seq_lens for kind in ("TaskStream.read", "numpy slice+stack")]
    times: dict[tuple[int, str], list[float]] = {v: [] for v in variants}
    for T in seq_lens:  # the two methods must agree
        ids = rng.integers(0, streams[T].n_blocks, size=batch)
        assert np.array_equal(streams[T].read(ids), _read_reference(tokens, T, ids))
    for r in range(rounds):
        for T, kind in rotated(variants, r):
            stream = streams[T]
            id_sets = [rng.integers(0, stream.n_blocks, size=batch) for _ in range(calls)]
            started = time.perf_counter()
            if kind == "TaskStream.read":
                for ids in id_sets:
                    stream.read(ids)
            else:
                for ids in id_sets:
                    _read_reference(tokens, T, ids)
            times[(T, kind)].append(time.perf_counter() - started)
    return {"batch": batch, "calls": calls, "itemsize": tokens.dtype.itemsize,
            "n_blocks": {T: s.n_blocks for T, s in streams.items()},
            "times": {f"{T}/{k}": t for (T, k), t in times.items()}}


# ------------------------------------------------------------------------------------------ tables
def table_prepare(p: dict, bpe: dict) -> str:
    return "\n".join([
        "| step | seconds |",
        "| --- | ---: |",
        f"| prepare_data, cold (5 corpora + BPE + 5 shard sets) | {p['cold_s']:.2f} |",
        f"| prepare_data, warm (all cached: start-up cost of a run) | {p['warm_s']:.2f} |",
        f"| BPE training, default config (vocab {bpe['vocab_size']}, {bpe['chars_per_task']:,} chars/task, "
        f"{bpe['train_chars'] / MB:.1f} M chars), median of {len(bpe['seconds'])} | "
        f"{spread(bpe['seconds'], '{:.2f}')} |",
    ])


def table_write_split(w: dict) -> str:
    lines = ["| task | text MB | docs | tokens | read docs (s) | write_split MB/s | write_split Mtok/s "
             "| tokenizer only MB/s | tokenizer share of write_split |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    tot_bytes = tot_w = tot_t = 0.0
    for name, nbytes in w["bytes"].items():
        ws, tok = w["times"][f"{name}/write_split"], w["times"][f"{name}/tokenize"]
        mw, mt = statistics.median(ws), statistics.median(tok)
        tot_bytes, tot_w, tot_t = tot_bytes + nbytes, tot_w + mw, tot_t + mt
        lines.append(
            f"| {name} | {nbytes / MB:.2f} | {w['documents'][name]} | {w['tokens'][name]:,} | {w['read_s'][name]:.2f} "
            f"| {spread([nbytes / MB / t for t in ws])} | {w['tokens'][name] / 1e6 / mw:.2f} "
            f"| {spread([nbytes / MB / t for t in tok])} | {mt / mw:.0%} |")
    lines.append(f"| all | {tot_bytes / MB:.2f} | | {sum(w['tokens'].values()):,} | {sum(w['read_s'].values()):.2f} "
                 f"| {tot_bytes / MB / tot_w:.1f} | {sum(w['tokens'].values()) / 1e6 / tot_w:.2f} "
                 f"| {tot_bytes / MB / tot_t:.1f} | {tot_t / tot_w:.0%} |")
    return "\n".join(lines)


def table_reads(rd: dict) -> str:
    lines = ["| seq_len | method | blocks/s | MB/s | us per call |",
             "| ---: | --- | ---: | ---: | ---: |"]
    n = rd["batch"] * rd["calls"]
    for key, times in rd["times"].items():
        T, method = key.split("/", 1)
        block_bytes = (int(T) + 1) * rd["itemsize"]
        lines.append(f"| {T} | {method} | {spread([n / t for t in times], '{:,.0f}')} "
                     f"| {spread([n * block_bytes / MB / t for t in times])} "
                     f"| {statistics.median(times) / rd['calls'] * 1e6:.0f} |")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------ main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of write_split and reads")
    parser.add_argument("--bpe-rounds", type=int, default=2, help="BPE trainings to time (each ~5-10 s)")
    parser.add_argument("--seq-lens", type=int, nargs="+", default=[128, 2048], help="block lengths to read")
    parser.add_argument("--read-batch", type=int, default=32, help="block ids per TaskStream.read call")
    parser.add_argument("--read-calls", type=int, default=300, help="read calls per round and variant")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", action="store_true", help="keep the temporary data dir (path printed)")
    parser.add_argument("--json", type=Path, help="also write all raw timings to this JSON file")
    args = parser.parse_args(argv)

    info = machine_info()
    scratch = Path(tempfile.mkdtemp(prefix="mer-bench-data-"))
    try:
        print(f"preparing the default data into {scratch / 'data'} ...", file=sys.stderr, flush=True)
        prepared, prep = bench_prepare(scratch / "data")
        cfg = DataConfig(data_dir=str(scratch / "data"))
        corpora = [build_corpus(t, scratch / "data") for t in cfg.tasks]
        print("timing write_split ...", file=sys.stderr, flush=True)
        work = scratch / "work"
        work.mkdir()
        ws = bench_write_split(corpora, prepared.tokenizer, args.rounds, work)
        print("timing block reads ...", file=sys.stderr, flush=True)
        rd = bench_reads(prepared.shards[0].tokens("train"), args.seq_lens, args.read_batch, args.read_calls,
                         args.rounds, args.seed)
        print("timing BPE training ...", file=sys.stderr, flush=True)
        bpe = bench_bpe(corpora, args.bpe_rounds, work)
    finally:
        if args.keep:
            print(f"kept {scratch}", file=sys.stderr)
        else:
            shutil.rmtree(scratch, ignore_errors=True)
    info["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]

    print("## Data benchmarks (python benchmarks/bench_data.py " + " ".join(sys.argv[1:] if argv is None else argv)
          + ")\n")
    print(format_machine(info) + "\n")
    print("### Preparation\n")
    print(table_prepare(prep, bpe) + "\n")
    print(f"### Sharding: write_split per task, median (min-max) of {args.rounds} interleaved rounds\n")
    print(table_write_split(ws) + "\n")
    print(f"### Random block reads from the en train shard ({prepared.shards[0].n_tokens('train'):,} tokens, "
          f"{rd['itemsize']} bytes/token, page cache warm), {args.read_batch} ids per call, "
          f"{args.read_calls} calls per round, median (min-max) of {args.rounds} interleaved rounds\n")
    print(table_reads(rd))
    if args.json:
        args.json.write_text(json.dumps({"machine": info, "prepare": prep, "bpe": bpe, "write_split": ws,
                                         "reads": rd, "args": {k: str(v) for k, v in vars(args).items()}},
                                        indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
