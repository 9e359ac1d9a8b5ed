"""`python -m sweeps.status <sweep dir>`: completed / running / failed (with the error) / pending runs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from sweep_helpers import REPO, compose, run_dirs, run_mer, summary

from mer.run_dir import run_name_from_overrides
from sweeps.status import expected_grid_runs, format_status, sweep_status


def status_cli(sweep_dir: Path, *flags: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sweeps.status", str(sweep_dir), *flags], cwd=REPO,
                          capture_output=True, text=True, timeout=120)


def write_run(sweep_dir: Path, name: str, status: str, error: str | None = None, step: int = 7) -> None:
    """A run directory as the trainer leaves it (docs/run_directory.md), written by hand for the table test."""
    run = sweep_dir / name
    run.mkdir(parents=True)
    done = status == "completed"
    (run / "summary.json").write_text(json.dumps({
        "status": status, "error": error, "run_name": name,
        "metrics": {"retained_loss": 4.5} if done else None,
        "totals": {"flops_train": 1e12, "steps": step} if done else None}))
    (run / "metrics.jsonl").write_text(json.dumps({"event": "train", "step": step}) + "\n")


def test_grid_status_lists_every_state_and_the_pending_runs(tmp_path):
    from omegaconf import OmegaConf, open_dict

    overrides = ["+sweep=paper_grid", f"runs_dir={tmp_path}", "alpha=0,0.5"]
    cfg = compose(overrides[:2])
    with open_dict(cfg):
        cfg.hydra.overrides.task = overrides  # what Hydra records in multirun.yaml
    OmegaConf.save(cfg, tmp_path / "multirun.yaml")
    expected = expected_grid_runs(OmegaConf.load(tmp_path / "multirun.yaml"))
    assert len(expected) == 18  # alpha from the command line (2 values) x k x eps
    assert run_name_from_overrides(["+sweep=paper_grid", f"runs_dir={tmp_path}", "alpha=0", "k=100",
                                    "eps=0.01"]) in expected

    write_run(tmp_path, expected[0], "completed", step=12)
    write_run(tmp_path, expected[1], "running", step=3)
    write_run(tmp_path, expected[2], "failed", error="Traceback ...\nValueError: the loss is nan at step 3")
    result = sweep_status(tmp_path)
    assert result["kind"] == "grid" and result["expected"] == 18
    assert result["counts"] == {"completed": 1, "running": 1, "failed": 1, "pending": 15}
    rows = {row["run"]: row for row in result["runs"]}
    assert rows[expected[2]]["error"] == "ValueError: the loss is nan at step 3"
    assert rows[expected[0]]["step"] == 12 and rows[expected[0]]["retained_loss"] == 4.5
    assert rows[expected[1]]["step"] == 3
    table = format_status(result)
    assert "1 completed, 1 running, 1 failed, 15 pending" in table
    assert "ValueError: the loss is nan at step 3" in table

    cli = status_cli(tmp_path, "--json")
    assert cli.returncode == 0 and json.loads(cli.stdout)["counts"] == result["counts"]
    assert status_cli(tmp_path / "missing").returncode == 2


@pytest.mark.slow
def test_relaunch_runs_only_what_is_missing(tiny, tmp_path):
    """A real grid: a failed run beside it, one run deleted -> pending; launched again, only that one runs."""
    grid = ["-m", "+sweep=paper_grid", f"runs_dir={tmp_path}", "alpha=0,0.25", "k=2", "eps=0.5", *tiny]
    run_mer(grid)
    first, second = run_dirs(tmp_path)
    bad = run_mer([f"runs_dir={tmp_path}", "optim.lr=1e30", *tiny], check=False)
    assert bad.returncode == 2
    kept_mtime = (first / "summary.json").stat().st_mtime_ns
    import shutil

    shutil.rmtree(second)
    before = status_cli(tmp_path)
    assert before.returncode == 0
    assert "1 completed, 0 running, 1 failed, 1 pending" in before.stdout, before.stdout
    assert "the loss is nan" in before.stdout

    run_mer(grid)
    assert (first / "summary.json").stat().st_mtime_ns == kept_mtime  # skipped, not rerun
    assert summary(second)["status"] == "completed"
    after = json.loads(status_cli(tmp_path, "--json").stdout)
    assert after["counts"] == {"completed": 2, "running": 0, "failed": 1, "pending": 0}


@pytest.mark.slow
def test_optuna_sweep_status(tiny, tmp_path):
    run_mer(["-m", "+sweep=optuna_mer", f"runs_dir={tmp_path}", "hydra.sweeper.n_trials=2", *tiny])
    result = sweep_status(tmp_path)
    assert result["kind"] == "optuna"
    assert result["optuna"]["trials"] == {"complete": 2} and result["optuna"]["pending"] == 0
    assert result["counts"]["completed"] == 2
    assert "best trial" in status_cli(tmp_path).stdout
