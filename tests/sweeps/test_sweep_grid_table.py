"""The grid sweeper (hydra/sweeper=mer_grid, the default of `python -m mer.run -m`): a point refused by the
config check is recorded, the other points still run, and the sweep ends with one table of every point."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sweep_helpers import run_mer, summary

# tiny_overrides trains with optim.batch_size=8: alpha=0.99 leaves round(0.01*8)=0 new sequences per step,
# which RunConfig's check refuses before any work.
REFUSAL = "alpha=0.99 with optim.batch_size=8 leaves round((1-alpha)*B)=0 new sequences per step"


def table_rows(text: str) -> dict[str, str]:
    """`point -> status` from the printed table (the lines between its header and its counts line)."""
    lines = text.splitlines()
    header = max(i for i, line in enumerate(lines) if line.startswith("status") and " step " in line)
    rows = {}
    for line in lines[header + 1:]:
        if line.startswith(("completed", "running", "failed", "refused", "pending")):
            status, point = line.split()[0], line.split()[5]
            rows[point] = status
        else:
            break
    return rows


def by_point(sweep_dir: Path) -> dict[str, dict]:
    return {row["point"]: row for row in json.loads((sweep_dir / "sweep_table.json").read_text())["runs"]}


@pytest.mark.slow
def test_refused_point_is_recorded_and_the_others_complete(tiny, tmp_path):
    sweep_dir = tmp_path / "sweep"
    grid = ["-m", f"runs_dir={sweep_dir}", "alpha=0,0.25,0.99", "k=0", *tiny]
    first = run_mer(grid, check=False)
    out = first.stdout + first.stderr
    assert first.returncode != 0, out[-3000:]
    assert f"1 of 3 points refused/failed, see {sweep_dir / 'sweep_table.txt'}" in out

    rows = by_point(sweep_dir)
    assert {point: row["status"] for point, row in rows.items()} == {
        "alpha=0": "completed", "alpha=0.25": "completed", "alpha=0.99": "refused"}
    assert rows["alpha=0.99"]["error"].startswith(REFUSAL)
    refused = summary(rows["alpha=0.99"]["run_dir"])
    assert refused["status"] == "refused" and refused["error"].startswith(REFUSAL)
    assert refused["run_name"] == Path(rows["alpha=0.99"]["run_dir"]).name
    assert sorted(p.name for p in Path(rows["alpha=0.99"]["run_dir"]).iterdir()) == ["summary.json"]  # no work
    for point in ("alpha=0", "alpha=0.25"):
        assert summary(rows[point]["run_dir"])["status"] == "completed"

    saved = (sweep_dir / "sweep_table.txt").read_text()
    assert table_rows(first.stdout) == table_rows(saved) == {
        "alpha=0": "completed", "alpha=0.25": "completed", "alpha=0.99": "refused"}
    assert REFUSAL in saved and "2 completed, 0 running, 0 stopped, 0 interrupted, 0 failed, 1 refused, 0 pending" in saved

    # Launched again: the completed points are skipped (their summaries untouched) and still listed.
    stamps = {p: Path(rows[p]["run_dir"], "summary.json").stat().st_mtime_ns for p in ("alpha=0", "alpha=0.25")}
    again = run_mer(grid, check=False)
    assert again.returncode != 0
    assert again.stdout.count("is already completed") + again.stderr.count("is already completed") == 2
    assert {p: Path(rows[p]["run_dir"], "summary.json").stat().st_mtime_ns for p in stamps} == stamps
    assert table_rows(again.stdout) == {"alpha=0": "completed", "alpha=0.25": "completed", "alpha=0.99": "refused"}


@pytest.mark.slow
def test_a_grid_without_refusals_exits_zero_with_every_point_completed(tiny, tmp_path):
    sweep_dir = tmp_path / "sweep"
    proc = run_mer(["-m", f"runs_dir={sweep_dir}", "alpha=0,0.25", "k=0", *tiny])
    assert table_rows(proc.stdout) == {"alpha=0": "completed", "alpha=0.25": "completed"}
    table = json.loads((sweep_dir / "sweep_table.json").read_text())
    assert table["counts"]["completed"] == table["expected"] == 2
    assert all(row["retained_loss"] is not None for row in table["runs"])


@pytest.mark.parametrize("previous", ["completed", "failed", "running"])
def test_a_refusal_never_overwrites_a_runs_summary(previous, tmp_path):
    """A run directory that already holds a run (here under a fixed run_name) keeps its summary byte for
    byte; the sweep still reports the point as refused. No data is touched: the check runs first."""
    run_dir = tmp_path / "victim"
    run_dir.mkdir()
    text = json.dumps({"status": previous, "error": None, "run_name": "victim", "metrics": {"retained_loss": 4.2}})
    (run_dir / "summary.json").write_text(text)
    proc = run_mer(["-m", f"runs_dir={tmp_path}", "run_name=victim", "alpha=0.99", "optim.batch_size=8",
                    f"data.data_dir={tmp_path / 'data'}"], check=False)
    assert proc.returncode != 0
    assert (run_dir / "summary.json").read_text() == text
    assert not (tmp_path / "data").exists()
    row = json.loads((tmp_path / "sweep_table.json").read_text())["runs"][0]
    assert row["status"] == "refused" and row["error"].startswith(REFUSAL)


def test_a_single_run_refusal_prints_the_reason_and_exits_2(tmp_path):
    proc = run_mer([f"runs_dir={tmp_path / 'runs'}", "alpha=0.99", "optim.batch_size=8",
                    f"data.data_dir={tmp_path / 'data'}"], check=False)
    assert proc.returncode == 2
    assert f"refused: {REFUSAL}; lower alpha or raise the batch size" in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    # Hydra makes the (run) dir runs_dir itself; nothing is written into it.
    assert not any((tmp_path / "runs").iterdir()) and not (tmp_path / "data").exists()


def test_record_refusal_replaces_only_a_refusal(tmp_path):
    from mer.rundir.refusal import record_refusal

    assert record_refusal(tmp_path / "new", "new", "first reason")
    assert record_refusal(tmp_path / "new", "new", "second reason")  # a refusal is updated
    assert summary(tmp_path / "new") == {"status": "refused", "error": "second reason", "run_name": "new"}
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "summary.json").write_text("{half a summ")  # being written, or damaged: kept
    assert not record_refusal(tmp_path / "broken", "broken", "reason")
    assert (tmp_path / "broken" / "summary.json").read_text() == "{half a summ"
