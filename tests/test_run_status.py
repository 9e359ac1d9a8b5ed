"""A run always ends in a true status (mer.rundir.status, docs/run_directory.md): stopped by a signal even during
start-up, failed with the reason for an error during start-up, and on a full disk a status that still fits
and one line saying so. Real processes, real signals, a real full file system."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from mer_testing import small_bible_cli_overrides, tiny_run_config

from mer.files.atomic import DiskFull
from mer.rundir.layout import (
    RunLock,
    effective_error,
    effective_status,
    lock_is_held,
    read_summary,
)
from mer.rundir.lock import read_record
from mer.rundir.status import StatusWriter

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def launch(args: list[str]) -> subprocess.Popen:
    # The run gets SIGINT at its default action even where the tests run in the background (a shell then ignores
    # SIGINT, and an ignored signal stays ignored in a child): a handled signal is reset to the default by exec.
    ignored = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return subprocess.Popen([sys.executable, "-m", "mer.run", *args], cwd=REPO, env=ENV, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
    finally:
        signal.signal(signal.SIGINT, ignored)


def cli_args(data_dir: Path, runs_dir: Path, **changed: str) -> list[str]:
    args = [a for a in small_bible_cli_overrides(data_dir) if a.split("=", 1)[0] not in changed]
    return [*args, *(f"{key}={value}" for key, value in changed.items()), f"runs_dir={runs_dir}", "run_name=run"]


@pytest.mark.parametrize("signum", [signal.SIGTERM, pytest.param(signal.SIGINT, marks=pytest.mark.slow),
                                    pytest.param(signal.SIGUSR1, marks=pytest.mark.slow)], ids=lambda s: s.name)
def test_a_stop_signal_during_start_up_ends_stopped(small_bible, tmp_path, signum):
    """The signal reaches the run during its first evaluation, before the trainer handles signals: the run ends
    with status stopped (not a stale running), exit code 143, no traceback; the same command then trains it."""
    run_dir = tmp_path / "runs" / "run"
    # A slow first evaluation (every held-out token, one window per forward) holds the run in start-up.
    args = cli_args(small_bible[0].data_dir, tmp_path / "runs", **{"data.eval_tokens": "null", "eval.batch_size": "1"})
    proc = launch(args)
    try:
        deadline = time.monotonic() + 600
        while not (run_dir / "summary.json").exists():  # written once the model is built, just before fit()
            assert proc.poll() is None, proc.communicate()[0][-3000:]
            assert time.monotonic() < deadline
            time.sleep(0.005)
        os.kill(proc.pid, signal.SIGSTOP)
        metrics = run_dir / "metrics.jsonl"
        assert not metrics.exists() or '"eval"' not in metrics.read_text(), "the first evaluation ended too soon"
        os.kill(proc.pid, signum)
        os.kill(proc.pid, signal.SIGCONT)
        out, _ = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, out[-3000:]
    assert "Traceback" not in out
    summary = read_summary(run_dir)
    assert summary["status"] == "stopped" and f"stopped by signal {int(signum)} ({signum.name})" in summary["error"]
    assert effective_status(run_dir, summary) == "stopped" and not lock_is_held(run_dir)
    assert not (run_dir / "checkpoint").exists()


def test_a_damaged_checkpoint_is_refused_before_the_run_directory_is_written(small_bible, tmp_path):
    """A checkpoint that cannot be read is caught by the checks before any work (mer.rundir.resume_check): the run is
    refused naming the file, and the directory is left as it was: no summary.json, the lock free."""
    from mer.launch.runner import run_training

    cfg = tiny_run_config(small_bible[0], tmp_path)
    resolved = json.loads(json.dumps(dataclasses.asdict(cfg), default=str))
    run_dir = tmp_path / "run"
    (run_dir / "checkpoint").mkdir(parents=True)
    (run_dir / "checkpoint" / "state.pt").write_bytes(b"not a checkpoint")
    (run_dir / "config.json").write_text(json.dumps(resolved))  # without it the relaunch is refused for that
    with pytest.raises(Exception, match=r"checkpoint.*state\.pt"):
        run_training(cfg, "run", resolved)
    assert read_summary(run_dir) is None
    assert sorted(p.name for p in run_dir.iterdir()) == ["checkpoint", "config.json"] and not lock_is_held(run_dir)


@pytest.fixture
def small_filesystem(tmp_path):
    """A 1.5 MiB tmpfs of its own, or a skip saying why there cannot be one."""
    mount_point = tmp_path / "small"
    mount_point.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1536k", f"mer-test-{uuid.uuid4().hex[:6]}",
                           str(mount_point)], capture_output=True, text=True, check=False)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root and mount rights): {made.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def fill(directory: Path) -> None:
    """Write a file until the file system says it is full."""
    with open(directory / "filler", "wb") as handle:
        try:
            while True:
                handle.write(b"\0" * 65536)
                handle.flush()
        except OSError as error:
            assert error.errno == 28  # ENOSPC


def test_on_a_full_disk_the_status_goes_into_the_lock_file(small_filesystem):
    run_dir = small_filesystem / "run"
    with RunLock(run_dir) as lock:
        status = StatusWriter(run_dir / "summary.json", lock, {"status": "running", "error": None, "run_name": "run"})
        status.write()
        before = (run_dir / "summary.json").read_text()
        fill(small_filesystem)
        with pytest.raises(DiskFull, match="no space left .* the run is failed .*run.lock since summary.json could not"):
            status.record_end(RuntimeError("the loss is nan at step 3"))
        assert (run_dir / "summary.json").read_text() == before  # the old summary stays whole
        assert not [p for p in run_dir.iterdir() if p.name.startswith(".summary.json")]  # no temporary left
    record = read_record(run_dir)
    assert record["status"] == "failed" and record["error"] == "RuntimeError: the loss is nan at step 3"
    summary = read_summary(run_dir)
    assert summary["status"] == "running"  # what summary.json still says; readers know better:
    assert effective_status(run_dir, summary) == "failed"
    assert effective_error(run_dir, summary) == "RuntimeError: the loss is nan at step 3"


def test_a_run_that_fills_the_disk_ends_failed_with_one_line(small_bible, small_filesystem):
    """Training on a file system too small for a checkpoint: status failed (where it fits), one line, exit 2."""
    run_dir = small_filesystem / "runs" / "run"
    proc = launch(cli_args(small_bible[0].data_dir, small_filesystem / "runs"))
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 2, out[-3000:]
    assert "Traceback" not in out and "During handling" not in out, out[-3000:]
    said = [line for line in out.splitlines() if "no space left" in line]
    assert len(said) == 1 and "run the same command again" in said[0], out[-3000:]
    summary = read_summary(run_dir)
    assert effective_status(run_dir, summary) == "failed"
    assert not lock_is_held(run_dir)


def test_start_up_signal_handling_leaves_other_handlers_in_charge_and_restores_the_defaults():
    """Only signals at their default action raise StopSignal (a sweep's own handler keeps them); afterwards the
    defaults are back, so a later job of a multirun starts as the first one did."""
    from mer.rundir.status import StopSignal
    from mer.signals.startup_signals import stop_on_signals

    seen = []
    interrupt_before = signal.getsignal(signal.SIGINT)  # SIG_IGN in a shell's background job, else Python's own
    previous = signal.signal(signal.SIGUSR1, lambda signum, frame: seen.append(signum))
    try:
        with pytest.raises(StopSignal, match=r"signal 15 \(SIGTERM\)"), stop_on_signals():
            os.kill(os.getpid(), signal.SIGUSR1)
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1)
        assert seen == [signal.SIGUSR1]
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
        assert signal.getsignal(signal.SIGINT) == interrupt_before
    finally:
        signal.signal(signal.SIGUSR1, previous)
