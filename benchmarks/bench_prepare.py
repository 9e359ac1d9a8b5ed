"""Sharded preparation (`python -m mer.data.prepare`): tokens per second with 1 and 2 workers, and peak memory
against corpus size.

    python benchmarks/bench_prepare.py                          # 2 x 40 MB synthetic corpus, 3 rounds
    python benchmarks/bench_prepare.py --mb 200 --workers 1,2,4 --rounds 3 --sizes 50,200 --json out.json

What it does, on a fresh temporary folder:

1. Writes a synthetic multilingual corpus (Latin, Cyrillic and Japanese script words, seeded; JSONL files of
   `--file-mb` each) of `--mb` MB per task, two tasks, and trains the BPE once (not timed).
2. For each worker count, `--rounds` times in rotating order: a fresh data folder, the preparation of the shards
   alone (the trained tokenizer given as `data.tokenizer.path`), timed; tokens per second of the whole preparation
   (reading, tokenizing, writing, hashing). Each preparation runs in its own child process, which reports its own
   peak RSS and its workers' largest (`getrusage`).
3. Peak RSS with 1 worker at each corpus size of `--sizes` (MB per task): it must not grow with the corpus.

Prints a Markdown table per part, with the machine and its load average: on shared cores (a study running beside it)
the numbers are not a measurement of the code, and the script says so when the load is high.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from machine import format_machine, machine_info
from rounds import rotated, spread

REPO = Path(__file__).resolve().parents[1]
WORDS = {
    "latin": "the house river light morning letter maison rivière lumière matin lettre haus fluss licht".split(),
    "cyrillic": "дом река свет утро письмо город окно хлеб лес тишина".split(),
    "japanese": "いえ かわ ひかり あさ てがみ まち まど パン もり しずけさ".split(),
}


def write_corpus(root: Path, mb: int, file_mb: int, seed: int, words: list[str] | None = None) -> list[Path]:
    """`mb` MB of JSONL documents of sentences of `words` (default: every script's, mixed), in files of `file_mb`
    MB."""
    rng = np.random.default_rng(seed)
    vocab = words or [w for script in WORDS.values() for w in script]
    root.mkdir(parents=True, exist_ok=True)
    files, written, index = [], 0, 0
    while written < mb * 1_000_000:
        path = root / f"part-{index:04d}.jsonl"
        with open(path, "w", encoding="utf-8") as handle:
            size = 0
            while size < file_mb * 1_000_000 and written + size < mb * 1_000_000:
                ids = rng.integers(0, len(vocab), int(rng.integers(20, 400)))
                line = json.dumps({"text": " ".join(vocab[i] for i in ids)}, ensure_ascii=False) + "\n"
                handle.write(line)
                size += len(line.encode())
        files.append(path)
        written += size
        index += 1
    return files


def task_args(corpus: dict[str, Path]) -> str:
    tasks = ",".join(f"{{name:{name},source:files,train_files:['{folder}'],val_fraction:0.01}}"
                     for name, folder in corpus.items())
    return f"data.tasks=[{tasks}]"


def one_preparation(args: list[str]) -> dict:
    """Run inside the child: the preparation, then its own and its workers' peak RSS."""
    from mer.data.pipeline import prepare_data  # noqa: F401  (imported before timing)

    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "mer.data.prepare", *args], capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if proc.returncode:
        raise SystemExit(proc.stderr[-3000:])
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # the largest of prepare and workers
    return {"seconds": seconds, "rss_mb": children}


def measure(args: list[str]) -> dict:
    """One preparation in a fresh child process (so that getrusage sees only it and its workers)."""
    # One worker is one core: the tokenizer's own threads are off in every variant (the command's own process
    # with them on is the "threads" row, for reference).
    threads = "workers=threads" in args
    args = [arg for arg in args if arg != "workers=threads"] + (["workers=1"] if threads else [])
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "true" if threads else "false"}
    out = subprocess.run([sys.executable, __file__, "--child", json.dumps(args)], capture_output=True, text=True,
                         cwd=REPO, env=env)
    if out.returncode:
        raise SystemExit(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def tokens_of(data_dir: Path) -> int:
    return sum(json.loads(p.read_text())["splits"][s]["tokens"] for p in (data_dir / "shards").rglob("manifest.json")
               for s in ("train", "val"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=int, default=40, help="MB of text per task (two tasks)")
    parser.add_argument("--file-mb", type=int, default=16, help="MB per corpus file")
    parser.add_argument("--piece-mb", type=int, default=8, help="piece_bytes in MB")
    parser.add_argument("--workers", default="1,2,threads",
                        help="worker counts to compare; 'threads': one process with the tokenizer's own threads")
    parser.add_argument("--sizes", default="", help="MB per task for the memory part (empty: skip it)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(one_preparation(json.loads(args.child))))
        return
    info = machine_info()
    load_start = os.getloadavg()
    results: dict = {"machine": info, "throughput": {}, "memory": {}}
    with tempfile.TemporaryDirectory(prefix="bench_prepare_") as tmp:
        root = Path(tmp)
        corpus = {name: root / "corpus" / name for name in ("xa", "xb")}
        for seed, folder in enumerate(corpus.values()):
            write_corpus(folder, args.mb, args.file_mb, seed)
        common = [task_args(corpus), f"piece_bytes={args.piece_mb << 20}", "data.tokenizer.vocab_size=4096"]
        tokenizer_data = root / "tokenizer"
        subprocess.run([sys.executable, "-m", "mer.data.prepare", *common, f"data.data_dir={tokenizer_data}"],
                       check=True, capture_output=True, cwd=REPO)
        [tokenizer] = [p for p in (tokenizer_data / "tokenizers").iterdir() if p.is_dir() and not p.name.startswith(".")]
        common.append(f"data.tokenizer.path={tokenizer}")
        n_tokens = tokens_of(tokenizer_data)
        variants = [w if w == "threads" else int(w) for w in args.workers.split(",")]
        times: dict = {w: [] for w in variants}
        rss: dict = {w: [] for w in variants}
        fixed: dict = {w: [] for w in variants}
        for round_index in range(args.rounds):
            for workers in rotated(variants, round_index):
                data_dir = root / f"r{round_index}-w{workers}"
                result = measure([*common, f"workers={workers}", f"data.data_dir={data_dir}"])
                times[workers].append(result["seconds"])
                rss[workers].append(result["rss_mb"])
                assert tokens_of(data_dir) == n_tokens
                # The same command with everything prepared: its fixed cost (imports, the tokenizer's load, the
                # corpus's identity and coverage checks), which does not grow with the corpus.
                fixed[workers].append(measure([*common, f"workers={workers}", f"data.data_dir={data_dir}"])["seconds"])
                shutil.rmtree(data_dir)
        results["throughput"] = {"tokens": n_tokens, "seconds": times, "rss_mb": rss, "fixed_seconds": fixed}
        for mb in [int(m) for m in args.sizes.split(",") if m]:
            sized = {name: root / f"corpus-{mb}" / name for name in corpus}
            for seed, folder in enumerate(sized.values()):
                write_corpus(folder, mb, args.file_mb, seed)
            sized_args = [task_args(sized), *common[1:]]
            results["memory"][mb] = measure([*sized_args, "workers=1", f"data.data_dir={root / f'm{mb}'}"])["rss_mb"]
            shutil.rmtree(root / f"m{mb}")
            shutil.rmtree(root / f"corpus-{mb}")
    load_end = os.getloadavg()
    print(format_machine(info, f"load average {load_start[0]:.2f} at the start, {load_end[0]:.2f} at the end"))
    if max(load_start[0], load_end[0]) > 0.5 * (info.get("cores_usable") or 1):
        print("NOTE: the cores were busy with other work; these numbers are not a clean measurement.")
    base = np.median(times[variants[0]])
    print(f"\n### Tokens per second ({n_tokens:,} tokens, 2 tasks of {args.mb} MB, pieces of {args.piece_mb} MB), "
          f"median (min-max) of {args.rounds} rounds\n")
    print("Whole command: `python -m mer.data.prepare` from start to end. Sharding: the same less the command's fixed "
          "cost (the same command run again with everything prepared: imports, tokenizer load, identity and coverage "
          "checks), which does not grow with the corpus.\n")
    print("| workers | seconds | Mtokens/s | speed-up | fixed cost (s) | sharding Mtokens/s | sharding speed-up | "
          "peak RSS of one process (MB) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    sharding = {w: float(np.median(times[w])) - float(np.median(fixed[w])) for w in variants}
    for workers in variants:
        median = float(np.median(times[workers]))
        print(f"| {workers} | {spread(times[workers], '{:.1f}')} | {n_tokens / median / 1e6:.2f} | "
              f"{base / median:.2f}x | {spread(fixed[workers], '{:.1f}')} | "
              f"{n_tokens / sharding[workers] / 1e6:.2f} | {sharding[variants[0]] / sharding[workers]:.2f}x | "
              f"{max(rss[workers]):.0f} |")
    if results["memory"]:
        print("\n### Peak RSS against corpus size (1 worker)\n\n| MB per task | peak RSS (MB) |\n| --- | --- |")
        for mb, value in results["memory"].items():
            print(f"| {mb} | {value:.0f} |")
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
