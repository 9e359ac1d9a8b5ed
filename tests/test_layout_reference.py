"""Moving code must not change what a run computes (#21): a fixed CPU run gives, bit for bit, the metrics lines,
summary and final `state.pt` stored in tests/fixtures/layout_reference/ (made by
tests/fixtures/layout_reference/make_reference.py with the code before mer/ was regrouped), and a run directory
that code left interrupted resumes and finishes as the uninterrupted run did.

Only the fields that time the process (fault_helpers.VOLATILE_FIELDS / VOLATILE_SUMMARY_FIELDS) and the library
versions in the summary are left out. The numbers are exact on the machine the reference was made on (CPU runs are
bit-reproducible there); the CPU capability that makes them so is in the failure message.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
from fault_helpers import VOLATILE_FIELDS, VOLATILE_SUMMARY_FIELDS, environment
from layout_reference_helpers import REFERENCE_DIR, reference_command, state_digest

pytestmark = pytest.mark.slow


def _run(cwd: Path) -> Path:
    done = subprocess.run(reference_command(), cwd=cwd, env=environment(), capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return cwd / "runs" / "run"


def _assert_matches_reference(run_dir: Path) -> None:
    where = f"(CPU capability {torch.backends.cpu.get_cpu_capability()})"
    want_lines = (REFERENCE_DIR / "metrics.jsonl").read_text().splitlines()
    got_lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    assert len(got_lines) == len(want_lines), (len(got_lines), len(want_lines))
    for number, (got, want) in enumerate(zip(got_lines, want_lines), start=1):
        stable = {k: v for k, v in json.loads(got).items() if k not in VOLATILE_FIELDS}
        assert stable == json.loads(want), f"metrics.jsonl line {number} differs from the reference {where}"
    # Every field of the reference's summary, equal; a field added to summary.json since (a new record of the run,
    # not a change of what it computed) is not in the reference and is not compared.
    summary = json.loads((run_dir / "summary.json").read_text())
    ignored = (*VOLATILE_SUMMARY_FIELDS, "versions")
    want_summary = {k: v for k, v in json.loads((REFERENCE_DIR / "summary.json").read_text()).items()
                    if k not in ignored}
    assert want_summary.keys() <= summary.keys(), sorted(want_summary.keys() - summary.keys())
    assert {k: summary[k] for k in want_summary} == want_summary, where
    want_state = json.loads((REFERENCE_DIR / "state_digest.json").read_text())
    got_state = json.loads(json.dumps(state_digest(run_dir / "checkpoint" / "state.pt")))
    assert got_state.keys() == want_state.keys(), sorted(set(got_state) ^ set(want_state))
    differing = [key for key in want_state if got_state[key] != want_state[key]]
    assert not differing, f"state.pt entries differ from the reference {where}: {differing[:10]}"


def test_fixed_run_is_bit_identical_to_the_stored_reference(tmp_path):
    _assert_matches_reference(_run(tmp_path))


def test_run_directory_written_before_the_regrouping_resumes(tmp_path):
    run_dir = tmp_path / "runs" / "run"
    shutil.copytree(REFERENCE_DIR / "interrupted", run_dir)
    before = json.loads((run_dir / "summary.json").read_text())
    assert before["status"] == "running" and (run_dir / "checkpoint" / "state.pt").is_file()
    records_before = len((run_dir / "metrics.jsonl").read_text().splitlines())
    _run(tmp_path)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "completed" and len(summary["provenance"]["attempts"]) == 2, summary["provenance"]
    assert len((run_dir / "metrics.jsonl").read_text().splitlines()) > records_before
    _assert_matches_reference(run_dir)
