"""`python -m sweeps.status <sweep dir>`: completed / running / stopped / interrupted / failed (with the error) /
refused (with the reason) / pending runs; a folder of several sweeps; a folder with nothing in it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from sweep_helpers import REPO, compose, run_dirs, run_mer, summary

from mer.rundir.layout import RunLock, run_name_from_overrides
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


def rows_of(result: dict) -> dict[str, dict]:
    return {row["run"]: row for row in result["runs"]}


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
    write_run(tmp_path, expected[3], "refused", error="k=500 is more than the 40 optimizer steps of task en")
    write_run(tmp_path, expected[4], "stopped", error="stopped by signal 15 at step 5; checkpoint saved, run the same "
              "command again to resume")
    write_run(tmp_path, expected[5], "running", step=4)  # no process holds its lock: it died without a word
    with RunLock(tmp_path / expected[1]):  # a live process owns this one
        result = sweep_status(tmp_path)
        cli = status_cli(tmp_path, "--json")
    assert result["kind"] == "grid" and result["expected"] == 18
    assert result["counts"] == {"completed": 1, "running": 1, "stopped": 1, "interrupted": 1, "failed": 1,
                                "refused": 1, "pending": 12}
    assert rows_of(result)[expected[4]]["error"].startswith("stopped by signal 15 at step 5")
    assert "launch it again to resume" in rows_of(result)[expected[5]]["error"]
    rows = {row["run"]: row for row in result["runs"]}
    assert rows[expected[2]]["error"] == "ValueError: the loss is nan at step 3"
    assert rows[expected[3]]["error"] == "k=500 is more than the 40 optimizer steps of task en"
    assert rows[expected[0]]["step"] == 12 and rows[expected[0]]["retained_loss"] == 4.5
    assert rows[expected[1]]["step"] == 3
    table = format_status(result)
    assert "1 completed, 1 running, 1 stopped, 1 interrupted, 1 failed, 1 refused, 12 pending" in table
    assert "ValueError: the loss is nan at step 3" in table
    assert "refused" in table and "k=500 is more than the 40 optimizer steps of task en" in table

    assert cli.returncode == 0 and json.loads(cli.stdout)["counts"] == result["counts"]
    assert sweep_status(tmp_path)["counts"]["interrupted"] == 2  # its owner gone too
    assert status_cli(tmp_path / "missing").returncode == 2


def write_grid(sweep_dir: Path, preset: str) -> list[str]:
    """A grid sweep's multirun.yaml as Hydra writes it; returns the run names it expects."""
    from omegaconf import OmegaConf, open_dict

    overrides = [f"+sweep={preset}", f"runs_dir={sweep_dir}"]
    cfg = compose(overrides)
    with open_dict(cfg):
        cfg.hydra.overrides.task = overrides
    sweep_dir.mkdir(parents=True)
    OmegaConf.save(cfg, sweep_dir / "multirun.yaml")
    return expected_grid_runs(OmegaConf.load(sweep_dir / "multirun.yaml"))


def test_a_folder_of_sweeps_lists_each_sweep_then_the_totals(tmp_path):
    grid = write_grid(tmp_path / "paper_grid", "paper_grid")
    scale = write_grid(tmp_path / "replay_vs_scale", "replay_vs_scale")
    write_run(tmp_path / "paper_grid", grid[0], "completed")
    write_run(tmp_path / "replay_vs_scale", scale[0], "refused", error="alpha=0.99 leaves 0 new sequences")
    write_run(tmp_path, "alpha=0.5", "failed", error="ValueError: the loss is nan at step 3")  # a loose run

    cli = status_cli(tmp_path)
    assert cli.returncode == 0, cli.stderr
    for section in (tmp_path / "paper_grid", tmp_path / "replay_vs_scale"):
        assert f"== {section}\n" in cli.stdout
    assert f"{tmp_path / 'paper_grid'} (grid of {len(grid)} expected): 1 completed, 0 running, 0 stopped, " \
           f"0 interrupted, 0 failed, 0 refused, {len(grid) - 1} pending" in cli.stdout
    assert f"{tmp_path / 'replay_vs_scale'} (grid of {len(scale)} expected): 0 completed, 0 running, 0 stopped, " \
           f"0 interrupted, 0 failed, 1 refused, {len(scale) - 1} pending" in cli.stdout
    assert "alpha=0.99 leaves 0 new sequences" in cli.stdout and "the loss is nan at step 3" in cli.stdout
    pending = len(grid) + len(scale) - 2
    assert cli.stdout.strip().splitlines()[-1] == (
        f"{tmp_path}: 3 sweeps; in all 1 completed, 0 running, 0 stopped, 0 interrupted, 1 failed, 1 refused, "
        f"{pending} pending")

    as_json = json.loads(status_cli(tmp_path, "--json").stdout)
    assert as_json["kind"] == "folder" and len(as_json["sweeps"]) == 3
    assert as_json["counts"] == {"completed": 1, "running": 0, "stopped": 0, "interrupted": 0, "failed": 1,
                                 "refused": 1, "pending": pending}


def test_a_folder_with_no_runs_and_no_sweeps_says_so_and_exits_2(tmp_path):
    (tmp_path / "notes").mkdir()  # a folder, but no run directory or sweep in it
    cli = status_cli(tmp_path)
    assert cli.returncode == 2 and cli.stdout == ""
    assert f"{tmp_path} holds no runs and no sweeps" in cli.stderr


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
    assert "1 completed, 0 running, 0 stopped, 0 interrupted, 1 failed, 0 refused, 1 pending" in before.stdout, \
        before.stdout
    assert "the loss is nan" in before.stdout

    run_mer(grid)
    assert (first / "summary.json").stat().st_mtime_ns == kept_mtime  # skipped, not rerun
    assert summary(second)["status"] == "completed"
    after = json.loads(status_cli(tmp_path, "--json").stdout)
    assert after["counts"] == {"completed": 2, "running": 0, "stopped": 0, "interrupted": 0, "failed": 1, "refused": 0,
                               "pending": 0}


@pytest.mark.slow
def test_optuna_sweep_status(tiny, tmp_path):
    # k=0 (fixed): the preset's k search reaches beyond the few steps of a tiny task, where points are refused.
    run_mer(["-m", "+sweep=optuna_mer", f"runs_dir={tmp_path}", "hydra.sweeper.n_trials=2", "k=0", *tiny])
    result = sweep_status(tmp_path)
    assert result["kind"] == "optuna"
    assert result["optuna"]["trials"] == {"complete": 2} and result["optuna"]["pending"] == 0
    assert result["counts"]["completed"] == 2
    assert "best trial" in status_cli(tmp_path).stdout
