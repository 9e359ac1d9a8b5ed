"""Provenance (mer/rundir/provenance.py): the commit, dirtiness and command of every attempt at a run."""

from __future__ import annotations

import dataclasses
import json
import shlex
import shutil
import signal
import subprocess
from pathlib import Path

import pytest
from mer_testing import tiny_run_config

from mer.launch.runner import run_training
from mer.rundir.provenance import PACKAGE_DIR, PROVENANCE_FILE, command_line, git_state, record_attempt
from mer.training.trainer import Trainer, TrainingStopped

needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def repo(tmp_path) -> Path:
    """A git checkout with one commit that tracks pkg/__init__.py."""
    repo = tmp_path / "repo"
    (repo / "pkg").mkdir(parents=True)
    (repo / "pkg" / "__init__.py").write_text("x = 1\n")
    _git(repo, "init", "-q")
    _git(repo, "add", "pkg/__init__.py")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@example.invalid", "commit", "-qm", "first")
    return repo


@needs_git
def test_commit_and_dirtiness_of_a_checkout(repo):
    commit = _git(repo, "rev-parse", "HEAD")
    assert git_state(repo / "pkg") == (commit, False)
    (repo / "untracked.txt").write_text("runs and caches do not make the code dirty")
    assert git_state(repo / "pkg") == (commit, False)
    (repo / "pkg" / "__init__.py").write_text("x = 2\n")
    assert git_state(repo / "pkg") == (commit, True)


@needs_git
def test_no_commit_outside_git_or_for_untracked_code(repo, tmp_path, capfd):
    # A wheel installed into a virtual environment inside some checkout: its files are not that checkout's.
    installed = repo / ".venv" / "site-packages" / "pkg"
    installed.mkdir(parents=True)
    (installed / "__init__.py").write_text("x = 1\n")
    assert git_state(installed) == (None, None)
    elsewhere = tmp_path / "not_git"
    elsewhere.mkdir()
    (elsewhere / "__init__.py").write_text("")
    assert git_state(elsewhere) == (None, None)
    assert "fatal" not in capfd.readouterr().err  # git's complaints are silenced


def test_a_missing_git_gives_null_not_an_error(monkeypatch):
    monkeypatch.setenv("PATH", "")
    assert git_state(PACKAGE_DIR) == (None, None)


def test_attempts_accumulate_in_provenance_json(tmp_path):
    first = record_attempt(tmp_path, None, argv=["mer.run", "alpha=0.5", "data.note=two words"])
    assert first["command"] == "mer.run alpha=0.5 'data.note=two words'"
    assert shlex.split(first["command"]) == ["mer.run", "alpha=0.5", "data.note=two words"]
    assert first["attempts"] == [{k: v for k, v in first.items() if k != "attempts"}]
    second = record_attempt(tmp_path, None, argv=["mer.run", "alpha=0.5"])
    assert [a["command"] for a in second["attempts"]] == [first["command"], "mer.run alpha=0.5"]
    assert json.loads((tmp_path / PROVENANCE_FILE).read_text()) == second


def _resolved(cfg) -> dict:
    return json.loads(json.dumps(dataclasses.asdict(cfg), default=str))


def test_runs_record_each_attempt_and_resume_across_commits(small_bible, tmp_path, monkeypatch):
    cfg = tiny_run_config(small_bible[0], tmp_path, budget_tokens=1024)
    run = tmp_path / "run"
    original = Trainer.train_step

    def stop_after_three(self, task):  # SIGTERM's effect, as in tests/test_trainer.py
        out = original(self, task)
        if self.position.step == 2:
            self._stop_signal = signal.SIGTERM
        return out

    monkeypatch.setattr(Trainer, "train_step", stop_after_three)
    with pytest.raises(TrainingStopped):
        run_training(cfg, "run", _resolved(cfg))
    first = json.loads((run / "summary.json").read_text())["provenance"]
    commit, dirty = git_state()
    assert (first["git_commit"], first["git_dirty"]) == (commit, dirty)
    assert first["command"] == command_line() and first["mer_version"]
    # The previous attempt ran other code: the resume is not refused (provenance is not in the config).
    saved = json.loads((run / PROVENANCE_FILE).read_text())
    saved["attempts"][0]["git_commit"] = saved["git_commit"] = "0" * 40
    (run / PROVENANCE_FILE).write_text(json.dumps(saved))
    monkeypatch.setattr(Trainer, "train_step", original)
    summary = run_training(cfg, "run", _resolved(cfg))
    assert summary["status"] == "completed"
    attempts = summary["provenance"]["attempts"]
    assert [a["git_commit"] for a in attempts] == ["0" * 40, commit]
    assert summary["provenance"]["git_commit"] == commit
    assert json.loads((run / PROVENANCE_FILE).read_text()) == summary["provenance"]
    assert "provenance" not in json.loads((run / "config.json").read_text())
    if commit is not None:  # the tests run from a checkout: it is this checkout's HEAD
        assert commit == _git(PACKAGE_DIR, "rev-parse", "HEAD")
