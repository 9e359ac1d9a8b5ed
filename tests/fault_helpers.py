"""Helpers of the fault-injection suite (tests/test_fault_injection.py): launch `python -m mer.run` as a user
does, kill it with SIGKILL at a chosen moment, and compare the finished run directory with an uninterrupted one.

Two ways to kill (both a real SIGKILL, which nothing in the process can catch or clean up after):
- at a named point of the code, `MER_FAULT_AT=<point>:<n>` (`mer.files.fault_points`): the process kills itself
  the n-th time it gets there, for moments too short to hit from outside (inside a checkpoint commit,
  between its renames, half-way through a metrics line);
- from outside, `Popen.kill()`, as soon as a condition on the files is seen (polled every few ms), at
  moments the test does not pick: where in the step, evaluation or checkpoint the process is then is chance.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
RUN_NAME = "run"

# A run of a few dozen optimizer steps on three small Bible tasks, logged at every step, evaluated every 5 steps
# and checkpointed every 4, so that every kind of write happens often. threads=1: the machine is shared.
TINY = ["model=cpu-0.3m", "model.seq_len=32", "optim.batch_size=8", "data.budget_tokens=2304", "data.eval_tokens=65",
        "eval.every=5", "eval.batch_size=4", "data.tokenizer.vocab_size=512",
        "data.tokenizer.train_chars_per_task=40000", "checkpoint_every=4", "log_every=1", "threads=1",
        "data.tasks=[" + ",".join(f"{{name:{lang},max_train_documents:30}}" for lang in ("en", "fr", "de")) + "]",
        f"run_name={RUN_NAME}"]

# Fields of a metrics.jsonl record that measure the process, not the training, and so legitimately differ
# between an uninterrupted run and a killed-and-resumed one (docs/run_directory.md):
VOLATILE_FIELDS = (
    "wall_time",     # seconds since the run first started: the resumed run also counts its second start-up
    "tokens_per_s",  # throughput of this process since it started: a timing
    "data_wait_s",   # seconds spent getting batches since THIS process started: restarts at 0 on a resume
    "mfu",           # FLOPs over elapsed time since the previous train line: a timing
)
# summary.json: everything must be equal but `wall_time_s`, the run's summed wall time (a timing), and
# `provenance`, which lists each attempt (start time, command, host): an interrupted run has more attempts.
VOLATILE_SUMMARY_FIELDS = ("wall_time_s", "provenance")
# Absolute paths into the data directory: the start-up chain prepares its own data directory, so only the part
# below it (the cloze set's content-named folder) must match the uninterrupted run's.
DATA_PATH_SUMMARY_FIELDS = ("cloze_dir",)


def command(config: list[str], runs_dir: Path, data_dir: Path) -> list[str]:
    return [sys.executable, "-m", "mer.run", *TINY, *config, f"runs_dir={runs_dir}", f"data.data_dir={data_dir}"]


def environment(fault: str | None = None) -> dict[str, str]:
    """The test's environment, importing this checkout's `mer`; `fault`: the `MER_FAULT_AT` value, if any."""
    env = {key: value for key, value in os.environ.items() if key != "MER_FAULT_AT"}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [env.get("PYTHONPATH")])])
    if fault is not None:
        env["MER_FAULT_AT"] = fault
    return env


def run(args: list[str], cwd: Path, fault: str | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=cwd, env=environment(fault), capture_output=True, text=True, timeout=timeout)


def kill_when(args: list[str], cwd: Path, condition: Callable[[], bool],
              timeout: float = 600) -> subprocess.CompletedProcess:
    """Start the command and SIGKILL it from outside as soon as `condition()` holds (checked every 2 ms).
    Fails the test if the process ends before the condition was ever seen (the kill would not have happened)."""
    proc = subprocess.Popen(args, cwd=cwd, env=environment(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None or time.monotonic() > deadline:
            out, err = proc.communicate()
            raise AssertionError(f"the process ended (code {proc.returncode}) before the kill condition held:\n"
                                 f"{err[-3000:]}")
        time.sleep(0.002)
    proc.kill()  # SIGKILL
    out, err = proc.communicate(timeout=60)
    return subprocess.CompletedProcess(args, proc.returncode, out, err)


def assert_killed(result: subprocess.CompletedProcess, fault: str | None = None) -> None:
    """The process died of SIGKILL (and, for a fault point, at that point: the hook says so just before)."""
    assert result.returncode == -signal.SIGKILL, (result.returncode, result.stderr[-3000:])
    if fault is not None:
        assert f"mer fault point {fault} reached" in result.stderr, result.stderr[-3000:]


def complete_lines(metrics: Path) -> list[dict[str, Any]]:
    """The records of the lines that end with a newline (a torn last line is left out)."""
    if not metrics.exists():
        return []
    text = metrics.read_text()
    return [json.loads(line) for line in text[: text.rfind("\n") + 1].splitlines()]


def torn_tail(metrics: Path) -> bytes:
    """What follows the last newline of metrics.jsonl: a partly written line, or b"" when there is none."""
    data = metrics.read_bytes() if metrics.exists() else b""
    return data[data.rfind(b"\n") + 1:]


def stable(record: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in record.items() if key not in VOLATILE_FIELDS}


def comparable_summary(summary: dict[str, Any]) -> dict[str, Any]:
    kept = {key: value for key, value in summary.items() if key not in VOLATILE_SUMMARY_FIELDS}
    for key in DATA_PATH_SUMMARY_FIELDS:
        if kept.get(key) is not None:
            kept[key] = Path(kept[key]).name
    return kept


@dataclass
class Finished:
    """What a finished run left: its metrics records, summary and final checkpoint state."""

    records: list[dict[str, Any]]
    raw_lines: list[str]
    summary: dict[str, Any]
    state: dict[str, Any]

    @classmethod
    def read(cls, run_dir: Path) -> Finished:
        lines = (run_dir / "metrics.jsonl").read_text().splitlines()
        state = torch.load(run_dir / "checkpoint" / "state.pt", map_location="cpu", weights_only=True)
        summary = json.loads((run_dir / "summary.json").read_text())
        return cls([json.loads(line) for line in lines], lines, summary, state)


def assert_prefix_of(records: list[dict[str, Any]], reference: Finished) -> None:
    """Every complete line a killed process left is the reference's line at the same place (deterministic
    training), so nothing it wrote before dying was wrong, only possibly unfinished."""
    assert len(records) <= len(reference.records)
    for index, (got, want) in enumerate(zip(records, reference.records)):
        assert stable(got) == stable(want), f"line {index + 1} differs from the uninterrupted run's: {got} != {want}"


def _equal(a: Any, b: Any, where: str) -> None:
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape, where
        assert torch.equal(a, b), f"{where}: tensors differ"
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), f"{where}: keys {sorted(a)} != {sorted(b)}"
        for key in a:
            _equal(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), f"{where}: lengths differ"
        for i, (x, y) in enumerate(zip(a, b)):
            _equal(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def assert_same_run(run_dir: Path, reference: Finished) -> None:
    """The resumed run is the uninterrupted one, bit for bit: every metrics line (losses, LRs, FLOPs and token
    counts exact; only VOLATILE_FIELDS ignored), no line duplicated or missing, the same summary (metrics, loss
    matrix, totals) and the same final checkpoint (weights, AdamW state, Reptile anchor, replay buffer, data
    positions, RNG states), and no temporary checkpoint left behind."""
    got = Finished.read(run_dir)
    assert got.summary["status"] == "completed", got.summary
    assert len(got.raw_lines) == len(reference.raw_lines), (len(got.raw_lines), len(reference.raw_lines))
    for index, (line, want) in enumerate(zip(got.records, reference.records)):
        assert stable(line) == stable(want), f"metrics.jsonl line {index + 1}: {stable(line)} != {stable(want)}"
        assert line.keys() == want.keys()
    summary, wanted = (comparable_summary(s) for s in (got.summary, reference.summary))
    differing = {k: (summary.get(k), wanted.get(k)) for k in summary.keys() | wanted.keys() if summary.get(k) != wanted.get(k)}
    assert not differing, f"summary.json differs (got, uninterrupted): {differing}"
    # The final state, without what measures the process rather than the training: position.wall_time (a
    # timing) and whatever describes the metrics log's bytes (`metrics_bytes`; `metrics`, where the checkpoint
    # records the log's size and hash): they depend on the timing fields' digits. The lines themselves are
    # compared above.
    strip = lambda s: {**{k: v for k, v in s.items() if k not in ("metrics_bytes", "metrics")},
                       "position": {k: v for k, v in s["position"].items() if k != "wall_time"}}
    _equal(strip(got.state), strip(reference.state), "state.pt")
    assert not (run_dir / "checkpoint.tmp").exists() and not (run_dir / "checkpoint.old").exists()
