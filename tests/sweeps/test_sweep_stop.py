"""SIGTERM or SIGINT to a local multirun (`python -m mer.run -m`, Hydra's in-process launcher) stops the whole
sweep: the job that is training checkpoints, no later job starts, the sweep exits with 143, and the same command
launched again finishes the sweep (mer.signals.stop_request, hydra_plugins/mer_sweeps/grid_sweeper.py)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sweep_helpers import REPO, metrics, run_mer, summary

SEEDS = (0, 1, 2)


def launch(args: list[str], log: Path) -> subprocess.Popen:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    env.pop("HYDRA_FULL_ERROR", None)  # as a user runs it
    return subprocess.Popen([sys.executable, "-m", "mer.run", *args], cwd=REPO, env=env,
                            stdout=log.open("w"), stderr=subprocess.STDOUT)


def points(sweep_dir: Path) -> dict[int, Path]:
    """seed -> run directory of every point that has one (a directory holding config.json)."""
    found = {}
    for config in sweep_dir.glob("*/config.json"):
        found[json.loads(config.read_text())["seed"]] = config.parent
    return found


def wait_for(condition, proc: subprocess.Popen, log: Path, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, f"the sweep ended before the signal:\n{log.read_text()[-3000:]}"
        assert time.monotonic() < deadline, f"timed out:\n{log.read_text()[-3000:]}"
        time.sleep(0.05)


def train_lines(run_dir: Path) -> int:
    path = run_dir / "metrics.jsonl"
    return sum('"event": "train"' in line for line in path.read_text().splitlines()) if path.exists() else 0


def sweep_args(tiny: list[str], sweep_dir: Path) -> list[str]:
    # 30,000 new tokens per task at 6 new sequences of 128 tokens per step (alpha=0.25, batch 8): 40 steps per
    # task, so a job trains for a few seconds and the signal is sent while it trains.
    return ["-m", f"runs_dir={sweep_dir}", "seed=" + ",".join(map(str, SEEDS)), *tiny,
            "data.budget_tokens=30000", "log_every=2", "checkpoint_every=1000"]


def assert_resumes_to_the_end(args: list[str], sweep_dir: Path) -> None:
    """The same command finishes every point; a resumed point's metrics have no duplicated or missing step."""
    again = run_mer(args)
    assert again.returncode == 0
    runs = points(sweep_dir)
    assert sorted(runs) == list(SEEDS)
    for run_dir in runs.values():
        assert summary(run_dir)["status"] == "completed"
        steps = [r["step"] for r in metrics(run_dir) if r["event"] == "train"]
        assert steps == sorted(set(steps)), steps


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_during_a_job_stops_the_sweep_after_its_checkpoint(tiny, tmp_path, signum):
    sweep_dir = tmp_path / "sweep"
    args = sweep_args(tiny, sweep_dir)
    log = tmp_path / "sweep.log"
    proc = launch(args, log)
    # The signal reaches the sweep while its second point (seed=1) trains.
    wait_for(lambda: 1 in points(sweep_dir) and train_lines(points(sweep_dir)[1]) >= 2, proc, log)
    proc.send_signal(signum)
    assert proc.wait(timeout=300) == 143, log.read_text()[-3000:]
    out = log.read_text()
    assert f"sweep stopped by signal {int(signum)}" in out and "Run the same command again to resume" in out
    assert "Traceback" not in out, out[-3000:]

    runs = points(sweep_dir)
    assert sorted(runs) == [0, 1], "a point after the signal was started"
    assert not any(p.is_dir() and not (p / "config.json").exists() for p in sweep_dir.iterdir()), \
        sorted(p.name for p in sweep_dir.iterdir())
    assert summary(runs[0])["status"] == "completed"
    stopped = summary(runs[1])
    assert stopped["status"] != "completed" and f"stopped by signal {int(signum)}" in stopped["error"]
    assert (runs[1] / "checkpoint" / "state.pt").is_file()

    assert_resumes_to_the_end(args, sweep_dir)


@pytest.mark.slow
def test_a_signal_between_jobs_starts_no_later_job(tiny, tmp_path):
    """The signal arrives as the first point completes: before it, the trainer's handler of a finished job (or
    the default action) used to swallow it, and the sweep went on with every later point."""
    sweep_dir = tmp_path / "sweep"
    args = sweep_args(tiny, sweep_dir)
    log = tmp_path / "sweep.log"
    proc = launch(args, log)
    wait_for(lambda: 0 in points(sweep_dir) and (points(sweep_dir)[0] / "summary.json").exists()
             and summary(points(sweep_dir)[0])["status"] == "completed", proc, log)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=300) == 143, log.read_text()[-3000:]
    out = log.read_text()
    assert "sweep stopped by signal 15" in out and "Traceback" not in out, out[-3000:]
    runs = points(sweep_dir)
    assert 2 not in runs, "the last point was started after the signal"
    if 1 in runs:  # the signal came after the second job had begun training: it checkpointed and stopped
        assert "stopped by signal 15" in summary(runs[1])["error"]
    assert_resumes_to_the_end(args, sweep_dir)
