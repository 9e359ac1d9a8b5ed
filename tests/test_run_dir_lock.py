"""One owner per run directory (mer.rundir.lock, docs/run_directory.md): real processes, real signals, real flock."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mer_testing import small_bible_cli_overrides

from mer.rundir.layout import (
    LOCK_FILE,
    RunDirLocked,
    RunLock,
    effective_status,
    lock_is_held,
    read_summary,
)
from mer.rundir.lock import read_record
from mer.rundir.refusal import record_refusal

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
# A process that takes a run directory's lock, says so, and holds it until it is killed.
HOLDER = ("import sys, time; from mer.rundir.lock import RunLock; lock = RunLock(sys.argv[1]); lock.acquire(); "
          "print('locked', flush=True); time.sleep(600)")


def hold_lock(run_dir: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(run_dir)], cwd=REPO, env=ENV, stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def launch(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "mer.run", *args], cwd=REPO, env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def wait_for(condition, procs: list[subprocess.Popen], what: str, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        for proc in procs:
            assert proc.poll() is None, f"a process ended before {what}: {proc.communicate()[1][-3000:]}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def snapshot(run_dir: Path) -> dict[str, tuple[int, int]]:
    """Every file below `run_dir` with its size and modification time."""
    return {str(p.relative_to(run_dir)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(run_dir.rglob("*")) if p.is_file()}


def test_a_held_lock_refuses_a_second_owner_by_name_and_dies_with_its_holder(tmp_path):
    run_dir = tmp_path / "run"
    holder = hold_lock(run_dir)
    try:
        assert lock_is_held(run_dir)
        before = snapshot(run_dir)
        with pytest.raises(RunDirLocked, match=rf"in use by pid {holder.pid} on .*started .*python.* -c"):
            RunLock(run_dir, wait_s=0.2).acquire()
        assert snapshot(run_dir) == before  # the refused process changed nothing
        assert read_record(run_dir)["pid"] == holder.pid
    finally:
        holder.kill()  # SIGKILL: no clean-up code runs, the kernel drops the lock
        holder.wait()
    assert (run_dir / LOCK_FILE).exists() and not lock_is_held(run_dir)
    with RunLock(run_dir) as lock:  # the stale lock file does not block the next owner
        assert lock_is_held(run_dir) and read_record(run_dir)["pid"] == os.getpid() == lock.record["pid"]
    assert not lock_is_held(run_dir)


def test_an_owner_that_ends_leaves_no_lock_file_and_no_empty_directory_it_made(tmp_path):
    with RunLock(tmp_path / "new"):
        assert (tmp_path / "new" / LOCK_FILE).is_file()
    assert not (tmp_path / "new").exists()
    with RunLock(tmp_path / "kept"):
        (tmp_path / "kept" / "config.json").write_text("{}")
    assert sorted(p.name for p in (tmp_path / "kept").iterdir()) == ["config.json"]


def test_a_refusal_is_not_recorded_where_a_live_run_owns_the_directory(tmp_path):
    run_dir = tmp_path / "point"
    holder = hold_lock(run_dir)
    try:
        assert not record_refusal(run_dir, "point", "alpha=0.99 leaves no new sequences")
        assert sorted(p.name for p in run_dir.iterdir()) == [LOCK_FILE]
    finally:
        holder.kill()
        holder.wait()
    assert record_refusal(run_dir, "point", "alpha=0.99 leaves no new sequences")
    assert read_summary(run_dir)["status"] == "refused"


@pytest.mark.slow
def test_two_concurrent_launches_one_trains_and_the_other_is_refused_untouched(small_bible, tmp_path):
    """Two identical `python -m mer.run` started together: the one that takes the lock is frozen (SIGSTOP) so the
    other surely meets it; that one exits 2 naming the holder's pid and changes no file; the first then finishes
    with a metrics log free of duplicated lines."""
    run_dir = tmp_path / "runs" / "twin"
    args = [*small_bible_cli_overrides(small_bible[0].data_dir), f"runs_dir={tmp_path / 'runs'}", "run_name=twin"]
    procs = [launch(args), launch(args)]
    try:
        wait_for(lambda: lock_is_held(run_dir) and (read_record(run_dir) or {}).get("pid"), procs, "the lock")
        holder_pid = read_record(run_dir)["pid"]
        (holder,) = [p for p in procs if p.pid == holder_pid]
        (other,) = [p for p in procs if p.pid != holder_pid]
        os.kill(holder_pid, signal.SIGSTOP)
        before = snapshot(run_dir)
        out, err = other.communicate(timeout=600)
        assert other.returncode == 2, err[-3000:]
        said = out + err
        assert f"is in use by pid {holder_pid} on " in said and "mer.run" in said and "Traceback" not in said
        assert snapshot(run_dir) == before
        os.kill(holder_pid, signal.SIGCONT)
        out, err = holder.communicate(timeout=600)
        assert holder.returncode == 0, err[-3000:]
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGCONT)
                proc.kill()
    assert read_summary(run_dir)["status"] == "completed"
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == len(set(lines)) > 5
    assert not lock_is_held(run_dir)


@pytest.mark.slow
def test_a_run_killed_by_sigkill_is_interrupted_and_the_next_launch_resumes_it(small_bible, tmp_path):
    run_dir = tmp_path / "runs" / "victim"
    args = [*small_bible_cli_overrides(small_bible[0].data_dir), f"runs_dir={tmp_path / 'runs'}", "run_name=victim",
            "data.budget_tokens=4096"]
    first = launch(args)
    try:
        wait_for(lambda: (run_dir / "checkpoint").is_dir(), [first], "the first checkpoint")
    finally:
        first.kill()
        first.communicate()
    assert read_summary(run_dir)["status"] == "running" and not lock_is_held(run_dir)
    assert effective_status(run_dir, read_summary(run_dir)) == "interrupted"
    listed = subprocess.run([sys.executable, "-m", "sweeps.status", str(tmp_path / "runs"), "--json"], cwd=REPO,
                            env=ENV, capture_output=True, text=True, timeout=300, check=False)
    assert json.loads(listed.stdout)["runs"][0]["status"] == "interrupted", listed.stderr

    second = launch(args)
    out, err = second.communicate(timeout=600)
    assert second.returncode == 0, err[-3000:]
    assert "resumed from checkpoint" in out + err
    assert read_summary(run_dir)["status"] == "completed"
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == len(set(lines))


def test_a_file_system_without_locks_is_refused_unless_the_user_accepts_it(tmp_path, monkeypatch, caplog):
    """flock failing with ENOLCK (NFS without its lock service) or ENOSYS (Lustre without -o flock): refused with
    the fix; MER_UNLOCKED_RUN_DIRS=1 trains without the lock, saying so. The failing flock stands in for such a
    file system, which this machine does not have."""
    import errno
    import fcntl

    from mer.rundir.lock import UNLOCKED_ENV, RunDirLockUnsupported

    real_flock = fcntl.flock

    def no_locks(fd, operation):
        if operation & fcntl.LOCK_EX:
            raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))
        return real_flock(fd, operation)

    monkeypatch.setattr(fcntl, "flock", no_locks)
    monkeypatch.delenv(UNLOCKED_ENV, raising=False)
    with pytest.raises(RunDirLockUnsupported, match=r"does not support file locks .*-o flock.*MER_UNLOCKED_RUN_DIRS=1"):
        RunLock(tmp_path / "run").acquire()
    monkeypatch.setenv(UNLOCKED_ENV, "1")
    with RunLock(tmp_path / "run") as lock:
        assert lock.fd is None
    assert "training without the lock" in caplog.text


def test_starting_over_is_refused_while_a_live_run_owns_the_directory(tmp_path):
    from mer.rundir.start_over import start_over

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.json").write_text("{}")
    (run_dir / "metrics.jsonl").write_text('{"event": "eval", "step": 0}\n')
    holder = hold_lock(run_dir)
    try:
        with pytest.raises(RunDirLocked, match=f"in use by pid {holder.pid}"):
            start_over(run_dir)
        assert (run_dir / "metrics.jsonl").is_file()
    finally:
        holder.kill()
        holder.wait()
    assert start_over(run_dir) and not (run_dir / "metrics.jsonl").exists()
