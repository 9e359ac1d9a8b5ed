"""Sweeps through a real single-node Slurm (hydra/launcher=slurm): a grid, skipping completed runs, requeue
after preemption (Slurm's SIGTERM) and after a time-out signal (submitit's USR2), jobs of two tasks
training as two data-parallel ranks (gloo), Optuna on Slurm."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sweep_helpers import REPO, metrics, run_dirs, run_mer, summary, tiny_overrides

pytestmark = pytest.mark.cluster

SLURM = ["hydra/launcher=slurm", "hydra.launcher.cpus_per_task=1", "hydra.launcher.timeout_min=20",
         "hydra.launcher.poll_s=1"]


def test_grid_on_slurm_completes_and_a_relaunch_submits_nothing(slurm_cluster, tiny, tmp_path):
    sweep_dir = tmp_path / "grid"
    run_mer(["-m", "+sweep=paper_grid", f"runs_dir={sweep_dir}", "alpha=0,0.25", "k=2", "eps=0.5", *SLURM, *tiny])
    runs = run_dirs(sweep_dir)
    assert len(runs) == 2 and all(summary(r)["status"] == "completed" for r in runs)
    submitted = sorted(p.name for p in (sweep_dir / ".submitit").iterdir())
    assert any(name.endswith("_0") for name in submitted) and any(name.endswith("_1") for name in submitted)
    mtimes = [(r / "summary.json").stat().st_mtime_ns for r in runs]

    proc = run_mer(["-m", "+sweep=paper_grid", f"runs_dir={sweep_dir}", "alpha=0,0.25", "k=2", "eps=0.5", *SLURM,
                    *tiny])
    assert (proc.stdout + proc.stderr).count("completed, not submitted") == 2
    assert sorted(p.name for p in (sweep_dir / ".submitit").iterdir()) == submitted  # no new Slurm job
    assert [(r / "summary.json").stat().st_mtime_ns for r in runs] == mtimes


def test_a_failing_job_fails_alone(slurm_cluster, tiny, tmp_path):
    """One job of the array fails (NaN loss; in a multirun mer.run raises instead of exiting): the sweep
    reports it in its table and ends instead of waiting for a result that never comes; the other run
    completes."""
    sweep_dir = tmp_path / "grid"
    proc = run_mer(["-m", f"runs_dir={sweep_dir}", "optim.lr=0.003,1e30", *SLURM, *tiny], check=False, timeout=300)
    assert proc.returncode != 0
    assert "1 of 2 points refused/failed" in proc.stdout + proc.stderr
    table = json.loads((sweep_dir / "sweep_table.json").read_text())
    assert {row["point"]: row["status"] for row in table["runs"]} == {"optim.lr=0.003": "completed",
                                                                     "optim.lr=1e+30": "failed"}
    assert "the loss is nan" in next(row["error"] for row in table["runs"] if row["status"] == "failed")
    states = sorted(summary(r)["status"] for r in run_dirs(sweep_dir))
    assert states == ["completed", "failed"]


def _start_long_sweep(sweep_dir: Path, data_dir: Path, extra: tuple[str, ...] = ()) -> tuple[subprocess.Popen, Path]:
    args = ["-m", f"runs_dir={sweep_dir}", "alpha=0.25", "data.allow_repeat=true", "log_every=5",
            "checkpoint_every=100000", *SLURM, *tiny_overrides(data_dir, budget_tokens=100_000), *extra]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.Popen([sys.executable, "-m", "mer.run", *args], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:  # wait until the job trains
        logs = list(sweep_dir.glob("*/metrics.jsonl"))
        if logs and sum(1 for r in metrics(logs[0].parent) if r["event"] == "train") >= 3:
            return proc, logs[0].parent
        assert proc.poll() is None, proc.stdout.read()
        time.sleep(0.2)
    proc.kill()
    raise AssertionError("the Slurm job did not start training within 300 s")


def _cleanup(proc: subprocess.Popen, sweep_dir: Path) -> None:
    if proc.poll() is None:
        proc.kill()
        for job in (sweep_dir / ".submitit").iterdir():
            subprocess.run(["scancel", job.name], capture_output=True)


def _job_id(sweep_dir: Path) -> str:
    (job,) = [p.name for p in (sweep_dir / ".submitit").iterdir() if re.fullmatch(r"\d+(_0)?", p.name)]
    return job  # a one-job "array" is submitted as a plain job


def _release(job_id: str) -> None:
    # Slurm holds a requeued job for a while (BeginTime) so that the old job's credential, revoked at the
    # requeue, cannot be confused with the new one (same second). Wait until it is pending, let a few
    # seconds pass, then let it start.
    state = ""
    for _ in range(300):
        state = subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%T"], capture_output=True, text=True).stdout
        if "PENDING" in state:
            time.sleep(3)
            subprocess.run(["scontrol", "update", f"jobid={job_id}", "StartTime=now"], check=True)
            return
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} was not requeued (state {state!r})")


def _check_resumed(proc: subprocess.Popen, run_dir: Path, sweep_dir: Path, job_id: str) -> None:
    out, _ = proc.communicate(timeout=400)
    assert proc.returncode == 0, out[-3000:]
    stopped = summary(run_dir)
    assert stopped["status"] == "completed", stopped
    logs = "".join(p.read_text() for p in (sweep_dir / ".submitit" / job_id).glob("*_log.*"))
    resumed = re.findall(r"resumed from checkpoint at step (\d+)", logs)
    assert len(resumed) == 1 and int(resumed[0]) > 0, logs[-3000:]
    records = metrics(run_dir)
    steps = [r["step"] for r in records if r["event"] == "train"]
    assert steps == sorted(set(steps)), "metrics restarted instead of continuing"
    assert [r["step"] for r in records if r["event"] == "eval"].count(0) == 1
    assert 0 <= stopped["totals"]["steps"] - steps[-1] < 5  # train lines every 5 steps up to the last step
    restarts = subprocess.run(["scontrol", "show", "job", job_id], capture_output=True, text=True).stdout
    assert "Restarts=1" in restarts, restarts


def test_requeue_after_preemption_resumes_from_the_checkpoint(slurm_cluster, sweep_data_dir, tmp_path):
    """`scontrol requeue` (what a preemption with PreemptMode=REQUEUE does): Slurm sends SIGTERM, the trainer
    checkpoints and exits 143, Slurm requeues the job, the job resumes in the same run directory."""
    sweep_dir = tmp_path / "requeue"
    proc, run_dir = _start_long_sweep(sweep_dir, sweep_data_dir)
    try:
        job_id = _job_id(sweep_dir)
        subprocess.run(["scontrol", "requeue", job_id], check=True)
        _release(job_id)
        _check_resumed(proc, run_dir, sweep_dir, job_id)
    finally:
        _cleanup(proc, sweep_dir)


TWO_TASKS = ("hydra.launcher.tasks_per_node=2", "threads=1")


def test_a_job_of_two_tasks_trains_as_two_ranks(slurm_cluster, tiny, tmp_path):
    """tasks_per_node=2: submitit starts two tasks, each becomes a rank (gloo on CPU) and they train one run
    whose losses follow the same run trained by one process."""
    run_mer(["-m", f"runs_dir={tmp_path / 'slurm'}", "alpha=0.25", "k=2", "eps=0.5", *SLURM, *TWO_TASKS, *tiny])
    run_mer([f"runs_dir={tmp_path / 'local'}", "alpha=0.25", "k=2", "eps=0.5", *tiny])
    (two,), (one,) = run_dirs(tmp_path / "slurm"), run_dirs(tmp_path / "local")
    assert two.name == one.name  # the number of processes is not part of a run's identity
    assert summary(two)["status"] == "completed" and summary(two)["world_size"] == 2 and summary(one)["world_size"] == 1
    flat = [[v for row in summary(r)["loss_matrix"] for v in row] for r in (one, two)]
    assert flat[1] == pytest.approx(flat[0], rel=1e-4)
    (job,) = [p for p in (tmp_path / "slurm" / ".submitit").iterdir() if p.is_dir()]
    logs = "".join(p.read_text() for p in job.glob("*_log.*"))
    assert "rank 0 of 2" in logs and len(list(job.glob("*_result.pkl"))) == 2, logs[-3000:]


def test_timeout_signal_to_a_job_of_two_tasks_checkpoints_then_requeues(slurm_cluster, sweep_data_dir, tmp_path):
    """submitit's time-out signal (USR2, as `--signal=USR2@<signal_delay_s>` sends it) reaches both tasks: the
    launcher passes it to the trainer, the ranks agree on the step, rank 0 checkpoints and submitit requeues
    the job (counting against max_num_timeout), both tasks resume. (The one-task case is the same path
    without the rank agreement; the preemption test above runs it.)"""
    sweep_dir = tmp_path / "timeout2"
    proc, run_dir = _start_long_sweep(sweep_dir, sweep_data_dir, TWO_TASKS)
    try:
        job_id = _job_id(sweep_dir)
        subprocess.run(["scancel", f"--signal={signal.SIGUSR2.name[3:]}", job_id], check=True)
        _release(job_id)
        _check_resumed(proc, run_dir, sweep_dir, job_id)
        assert summary(run_dir)["world_size"] == 2
    finally:
        _cleanup(proc, sweep_dir)


def test_optuna_study_on_slurm(slurm_cluster, tiny, tmp_path):
    """Two trials per batch as one Slurm job array, told to an sqlite study."""
    import optuna

    sweep_dir = tmp_path / "study"
    # The tiny budget has 2-4 steps a task: search k where it fires (the preset's k up to 1000 would be refused).
    run_mer(["-m", "+sweep=optuna_mer", f"runs_dir={sweep_dir}", "hydra.sweeper.n_trials=2", "hydra.sweeper.n_jobs=2",
             "k=tag(log, int(interval(1, 2)))", *SLURM, *tiny])
    study = optuna.load_study(study_name="optuna_mer", storage=f"sqlite:///{sweep_dir / 'optuna.db'}")
    trials = study.get_trials()
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE"]
    assert {t.user_attrs["job_idx"] for t in trials} == {0, 1}
    tasks = [p.name.split("_") for p in (sweep_dir / ".submitit").iterdir() if re.fullmatch(r"\d+_\d+", p.name)]
    assert len({array for array, _ in tasks}) == 1 and sorted(index for _, index in tasks) == ["0", "1"]
    for trial in trials:
        assert summary(trial.user_attrs["run_dir"])["metrics"]["retained_loss"] == trial.value
