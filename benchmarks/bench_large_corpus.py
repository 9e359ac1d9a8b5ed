"""A multi-GB corpus end to end (issue #20): prepared as a Slurm job array and by one process (byte-identical
shards), trained on for a few steps, and the time from `python -m mer.run` to training, before and after.

    python benchmarks/bench_large_corpus.py --root /data/bench --gb 5.4 --array-tasks 4
    python benchmarks/bench_large_corpus.py --root /data/bench --parts before --before-repo ../main-before

Parts (`--parts`, in this order; each records its numbers in `<root>/results.json`, so parts can run apart):

1. `corpus`: writes `--gb` GB of synthetic JSONL in three tasks (Latin, Cyrillic and Japanese script words,
   seeded; files of `--file-mb` MB), once.
2. `slurm`: `python -m mer.data.prepare launcher=slurm slurm.array_tasks=N` on the Slurm that `SLURM_CONF` names
   (`scripts/slurm_local.sh start` gives a one-node cluster), timed.
3. `one`: the same data prepared by one process (the command's default engine), timed; then (also alone as
   `compare`) every file of the two shard folders is hashed: they must be byte-identical.
4. `first_step`: `python -m mer.run` on the Slurm-prepared data, a few optimizer steps a task, twice; the
   start-up is the command's wall time less the run's own training-loop time (`wall_time_s` of summary.json).
5. `before`: the same run with another checkout's code (`--before-repo`, its `.venv`), after that code prepared the
   corpus its own way (not timed): the start-up before this change.

Prints Markdown tables with the machine and its load average.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_prepare import WORDS, write_corpus  # noqa: E402
from machine import format_machine, machine_info  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
TASKS = ("xa", "xb", "xc")
VOCAB = 4096


def task_args(root: Path) -> str:
    tasks = ",".join(f"{{name:{name},source:files,train_files:['{root / 'corpus' / name}'],val_fraction:0.001}}"
                     for name in TASKS)
    return f"data.tasks=[{tasks}]"


def write_big_corpus(root: Path, gb: float, file_mb: int) -> int:
    """Each task in one script (its words only), `gb / 3` GB each; skipped when written before."""
    done = root / "corpus" / "written.json"
    if done.is_file():
        return json.loads(done.read_text())["bytes"]
    for seed, (name, script) in enumerate(zip(TASKS, WORDS, strict=True)):
        write_corpus(root / "corpus" / name, int(gb * 1000 / len(TASKS)), file_mb, seed, words=WORDS[script])
    total = sum(p.stat().st_size for p in (root / "corpus").rglob("*.jsonl"))
    done.write_text(json.dumps({"bytes": total}))
    return total


def timed(command: list[str], cwd: Path, env: dict | None = None) -> float:
    started = time.perf_counter()
    proc = subprocess.run(command, cwd=cwd, capture_output=True, text=True, env={**os.environ, **(env or {})})
    if proc.returncode:
        raise SystemExit(f"{' '.join(command[:4])} ... failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    return time.perf_counter() - started


def prepare_command(python: str, root: Path, data_dir: Path, *extra: str) -> list[str]:
    return [python, "-m", "mer.data.prepare", task_args(root), f"data.data_dir={data_dir}",
            f"data.tokenizer.vocab_size={VOCAB}", *extra]


def shard_hashes(data_dir: Path) -> dict[str, str]:
    """sha256 of every file of the shard folders, by path below `shards/` (this machine's stamps left out)."""
    out = {}
    for path in sorted((data_dir / "shards").rglob("*")):
        if path.is_file() and path.name != "verified.json":
            digest = hashlib.sha256()
            with open(path, "rb") as handle:
                while chunk := handle.read(1 << 24):
                    digest.update(chunk)
            out[str(path.relative_to(data_dir / "shards"))] = digest.hexdigest()
    return out


def run_start(python: str, cwd: Path, root: Path, data_dir: Path, name: str) -> dict:
    """`python -m mer.run` for a few steps a task, in a runs folder of its own; its wall time and the run's own
    loop time."""
    runs = root / "runs" / name
    command = [python, "-m", "mer.run", task_args(root), f"data.data_dir={data_dir}", f"runs_dir={runs}",
               f"data.tokenizer.vocab_size={VOCAB}", "data.budget_tokens=4096", "data.eval_tokens=1024",
               "model=cpu-0.3m", "optim.batch_size=8", "alpha=0.25"]
    wall = timed(command, cwd)
    [summary] = sorted(runs.rglob("summary.json"))
    loop = float(json.loads(summary.read_text())["wall_time_s"])
    return {"wall_s": wall, "loop_s": loop, "startup_s": wall - loop}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--gb", type=float, default=5.4)
    parser.add_argument("--file-mb", type=int, default=256)
    parser.add_argument("--array-tasks", type=int, default=4)
    parser.add_argument("--before-repo", type=Path, help="the checkout before this change (with its .venv)")
    parser.add_argument("--parts", default="corpus,slurm,one,first_step")
    args = parser.parse_args()
    root = args.root.resolve()
    root.mkdir(parents=True, exist_ok=True)
    results_path = root / "results.json"
    results = json.loads(results_path.read_text()) if results_path.is_file() else {}
    parts = args.parts.split(",")
    info = machine_info()
    load_start = os.getloadavg()
    def save() -> None:  # after each part: a later part's failure keeps what the earlier ones measured
        results_path.write_text(json.dumps(results, indent=2))

    if "corpus" in parts:
        results["corpus_bytes"] = write_big_corpus(root, args.gb, args.file_mb)
        save()
    if "slurm" in parts:
        if "SLURM_CONF" not in os.environ:
            raise SystemExit("set SLURM_CONF (scripts/slurm_local.sh start prints it)")
        results["slurm_s"] = timed(prepare_command(sys.executable, root, root / "slurm", "launcher=slurm",
                                                   f"slurm.array_tasks={args.array_tasks}", "slurm.cpus_per_task=1",
                                                   "slurm.timeout_min=240", "slurm.poll_s=5"), REPO)
        save()
    if "one" in parts:
        results["one_s"] = timed(prepare_command(sys.executable, root, root / "one"), REPO)
        save()
    if "one" in parts or "compare" in parts:
        slurm, one = shard_hashes(root / "slurm"), shard_hashes(root / "one")
        results["identical"] = slurm == one and len(slurm) > 0
        results["shard_files"] = len(slurm)
        results["tokens"] = sum(json.loads((root / "one" / "shards" / key).read_text())["splits"][s]["tokens"]
                                for key in slurm if key.endswith("manifest.json") for s in ("train", "val"))
        save()
    if "first_step" in parts:
        results["after"] = [run_start(sys.executable, REPO, root, root / "slurm", f"after-{i}") for i in range(2)]
        save()
    if "before" in parts:
        before = args.before_repo.resolve()
        python = str(before / ".venv" / "bin" / "python")
        fresh = not (root / "before").exists()
        prepared = timed(prepare_command(python, root, root / "before"), before)
        if fresh:  # a preparation, not a look at its cache
            results["before_prepare_s"] = prepared
            save()
        results["before"] = [run_start(python, before, root, root / "before", f"before-{i}") for i in range(2)]
        save()
    load_end = os.getloadavg()
    print(format_machine(info, f"load average {load_start[0]:.2f} at the start, {load_end[0]:.2f} at the end"))
    print(f"\n### A {results.get('corpus_bytes', 0) / 1e9:.2f} GB corpus, three tasks\n")
    print("| step | seconds | note |\n| --- | --- | --- |")
    if "slurm_s" in results:
        print(f"| prepared as a Slurm array of {args.array_tasks} tasks | {results['slurm_s']:.0f} | one node, "
              f"{info.get('cores_usable')} cores |")
    if "one_s" in results:
        print(f"| prepared by one process | {results['one_s']:.0f} | {results['tokens']:,} tokens, "
              f"{results['shard_files']} files; byte-identical to the array's: {results['identical']} |")
    if "before_prepare_s" in results:
        print(f"| prepared by the code before (one process) | {results['before_prepare_s']:.0f} | |")
    for label, key in (("after this change", "after"), ("before this change", "before")):
        for i, start in enumerate(results.get(key, [])):
            print(f"| `python -m mer.run` start-up, {label}, start {i + 1} | {start['startup_s']:.1f} | command "
                  f"{start['wall_s']:.1f} s, training loop {start['loop_s']:.1f} s |")


if __name__ == "__main__":
    main()
