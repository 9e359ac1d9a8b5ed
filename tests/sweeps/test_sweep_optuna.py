"""The Optuna sweeper (hydra/sweeper=mer_optuna) on real runs: sqlite and journal storages, resume by name,
failed trials, an interrupted sweep that resumes its trial's run from the checkpoint."""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState
from sweep_helpers import REPO, metrics, run_mer, summary

pytestmark = pytest.mark.slow


def load(sweep_dir: Path, name: str, journal: bool = False) -> optuna.Study:
    if journal:
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        storage = JournalStorage(JournalFileBackend(str(sweep_dir / "optuna.journal")))
    else:
        storage = f"sqlite:///{sweep_dir / 'optuna.db'}"
    return optuna.load_study(study_name=name, storage=storage)


def optuna_args(sweep_dir: Path, name: str, n_trials: int, *extra: str) -> list[str]:
    return ["-m", "hydra/sweeper=mer_optuna", f"runs_dir={sweep_dir}", f"hydra.sweeper.study_name={name}",
            f"hydra.sweeper.n_trials={n_trials}", *extra]


def test_sqlite_study_records_run_dirs_and_resumes_by_name(tiny, tmp_path):
    sweep_dir = tmp_path / "sweep"
    args = ["hydra/sweeper/sampler=random", "hydra.sweeper.sampler.seed=1", "alpha=choice(0,0.25,0.5)", *tiny]
    run_mer(optuna_args(sweep_dir, "s1", 3, *args))
    study = load(sweep_dir, "s1")
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 3
    for trial in trials:
        s = summary(trial.user_attrs["run_dir"])
        assert Path(trial.user_attrs["run_dir"]).parent == sweep_dir.resolve()
        assert s["status"] == "completed" and s["metrics"]["retained_loss"] == trial.value
        assert f"alpha={trial.params['alpha']}" in trial.user_attrs["overrides"]
    best = yaml.safe_load((sweep_dir / "best.yaml").read_text())
    assert best["best"]["number"] == study.best_trial.number and best["best"]["values"] == [study.best_value]

    # Launched again with a larger n_trials: the study is loaded by name and only the missing trial runs.
    proc = run_mer(optuna_args(sweep_dir, "s1", 4, *args))
    assert "3 of 4 trials done" in proc.stdout + proc.stderr
    again = load(sweep_dir, "s1").get_trials()
    assert len(again) == 4 and all(t.state == TrialState.COMPLETE for t in again)
    assert [(t.params, t.value, t.datetime_start) for t in again[:3]] == [
        (t.params, t.value, t.datetime_start) for t in trials]
    # Nothing left to do: a third launch adds no trial.
    run_mer(optuna_args(sweep_dir, "s1", 4, *args))
    assert len(load(sweep_dir, "s1").get_trials()) == 4


def test_journal_storage(tiny, tmp_path):
    sweep_dir = tmp_path / "sweep"
    run_mer(optuna_args(sweep_dir, "j1", 2, "hydra.sweeper.storage=journal", "hydra.sweeper.sampler.seed=0",
                        "eps=tag(log, interval(0.05, 1.0))", *tiny))
    assert (sweep_dir / "optuna.journal").exists() and not (sweep_dir / "optuna.db").exists()
    trials = load(sweep_dir, "j1", journal=True).get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 2
    assert all(0.05 <= t.params["eps"] <= 1.0 for t in trials)


def test_failed_trials_are_told_fail_and_the_study_goes_on(tiny, tmp_path):
    """eps=5 is refused by the config check, lr=1e30 gives a NaN loss: in a multirun both jobs raise (no
    sys.exit), so each fails only its own trial. Two trials per batch."""
    sweep_dir = tmp_path / "sweep"
    run_mer(optuna_args(sweep_dir, "f1", 4, "hydra/sweeper/sampler=grid", "hydra.sweeper.n_jobs=2",
                        "eps=choice(0.1,5.0)", "optim.lr=choice(0.003,1e30)", *tiny))
    trials = load(sweep_dir, "f1").get_trials()
    assert len(trials) == 4
    by_params = {(t.params["eps"], t.params["optim.lr"]): t for t in trials}
    good = by_params[(0.1, 0.003)]
    assert good.state == TrialState.COMPLETE and math.isfinite(good.value)
    for key, trial in by_params.items():
        if key != (0.1, 0.003):
            assert trial.state == TrialState.FAIL, key
            assert trial.user_attrs["fail_reason"].startswith(("the job failed", "the launcher failed")), trial.user_attrs
    nan_run = by_params[(0.1, 1e30)].user_attrs["run_dir"]
    assert summary(nan_run)["status"] == "failed" and "nan" in summary(nan_run)["error"]
    best = json.loads((sweep_dir / "best.json").read_text())
    assert best["trials"] == {"complete": 1, "fail": 3} and best["best"]["number"] == good.number


def test_a_refused_trial_is_a_failed_trial_with_the_reason(tiny, tmp_path):
    """alpha=0.99 at tiny's batch of 8 is refused by the config check: the trial is told FAIL with the
    refusal as its fail_reason, its run directory says refused, and sweeps.status shows both."""
    sweep_dir = tmp_path / "sweep"
    run_mer(optuna_args(sweep_dir, "refused", 2, "hydra/sweeper/sampler=grid", "alpha=choice(0.25,0.99)", *tiny))
    trials = {t.params["alpha"]: t for t in load(sweep_dir, "refused").get_trials()}
    assert trials[0.25].state == TrialState.COMPLETE and trials[0.99].state == TrialState.FAIL
    reason = "alpha=0.99 with optim.batch_size=8 leaves round((1-alpha)*B)=0 new sequences per step"
    assert trials[0.99].user_attrs["fail_reason"].startswith(f"the job failed: RunRefused: {reason}")
    refused = summary(trials[0.99].user_attrs["run_dir"])
    assert refused["status"] == "refused" and refused["error"].startswith(reason)

    status = subprocess.run([sys.executable, "-m", "sweeps.status", str(sweep_dir)], cwd=REPO, capture_output=True,
                            text=True, timeout=120)
    assert status.returncode == 0, status.stderr
    refused_rows = [line for line in status.stdout.splitlines() if line.startswith("refused ")]
    assert len(refused_rows) == 1 and reason in refused_rows[0]
    assert f"trial {trials[0.99].number} failed: the job failed: RunRefused: {reason}" in status.stdout
    assert "1 completed, 0 running, 0 stopped, 0 interrupted, 0 failed, 1 refused" in status.stdout


def test_interrupted_sweep_resumes_its_trial_from_the_checkpoint(sweep_data_dir, tmp_path):
    """SIGTERM to a sweep running a trial in-process: the trainer checkpoints, the sweep stops (exit 143) with
    the trial RUNNING. Launched again, the trial is asked again with the same parameters and its run resumes."""
    from sweep_helpers import tiny_overrides

    sweep_dir = tmp_path / "sweep"
    args = optuna_args(sweep_dir, "r1", 1, "alpha=choice(0.25)", "data.allow_repeat=true", "log_every=5",
                       "checkpoint_every=100000", *tiny_overrides(sweep_data_dir, budget_tokens=100_000))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.Popen([sys.executable, "-m", "mer.run", *args], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            logs = list(sweep_dir.glob("*/metrics.jsonl"))
            if logs and sum(1 for r in metrics(logs[0].parent) if r["event"] == "train") >= 3:
                break
            assert proc.poll() is None, proc.stdout.read()
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, out[-3000:]
    run_dir = logs[0].parent
    stopped_at = int(re.search(r"at step (\d+)", summary(run_dir)["error"]).group(1))
    assert (run_dir / "checkpoint").is_dir() and summary(run_dir)["status"] == "stopped"
    assert [t.state for t in load(sweep_dir, "r1").get_trials()] == [TrialState.RUNNING]

    second = run_mer(args)
    trials = load(sweep_dir, "r1").get_trials()
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.COMPLETE]
    assert trials[1].user_attrs["retry_of"] == 0 and trials[1].params == trials[0].params
    assert trials[1].user_attrs["run_dir"] == str(run_dir.resolve())
    assert f"resumed from checkpoint at step {stopped_at}" in second.stdout + second.stderr
    records = metrics(run_dir)
    steps = [r["step"] for r in records if r["event"] == "train"]
    assert steps == sorted(set(steps)) and [r["step"] for r in records if r["event"] == "eval"].count(0) == 1
    assert summary(run_dir)["status"] == "completed"
