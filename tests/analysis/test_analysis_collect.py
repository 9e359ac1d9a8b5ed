"""Collecting run directories into tidy tables; flags for broken runs; agreement with summary.json."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import synthetic_runs as sr

from analysis.collect import collect, find_run_dirs, write_tables
from analysis.rundir import clean_resumed, read_run


def test_every_run_is_kept_and_flagged(collection) -> None:
    runs = collection.runs.set_index("run_id")
    assert len(runs) == len(sr.sweep_specs())
    failed = runs.loc["alpha=0.25,eps=1.0,k=0,model=m2,seed=7"]
    assert failed["status"] == "failed" and not failed["complete"] and not failed["usable"]
    assert "CUDA out of memory" in failed["error"]
    assert failed["tasks_done"] == 1
    running = runs.loc["alpha=0.5,eps=1.0,k=0,model=m4,seed=7"]
    # summary.json says running but no process holds the run's lock: its process is gone
    assert running["status"] == "interrupted" and not running["usable"]
    assert running["tasks_done"] == 2
    assert "task 2 has no boundary" in running["incomplete_reason"]
    assert math.isnan(running["retained_loss"])
    assert runs["usable"].sum() == len(runs) - 2


def test_recomputed_metrics_match_summary(collection) -> None:
    """summary.json was written from the closed-form truth, not from mer.evaluation.metrics."""
    runs = collection.runs
    done = runs[runs["status"] == "completed"]
    assert done["summary_agrees"].tolist() == [True] * len(done)
    for _, r in done.head(5).iterrows():
        summary = json.loads((Path(r["run_dir"]) / "summary.json").read_text())
        assert r["retained_loss"] == pytest.approx(summary["metrics"]["retained_loss"], rel=1e-12)
        assert r["forgetting.en"] == pytest.approx(summary["metrics"]["forgetting_per_task"]["en"], rel=1e-9)
        assert r["loss_after.de"] == pytest.approx(summary["loss_matrix"][2][2], rel=1e-12)


def test_run_row_has_config_sizes_and_flops(collection) -> None:
    r = collection.runs.set_index("run_id").loc["alpha=0.25,eps=0.1,k=5,model=m3,seed=1"]
    assert (r["model"], r["alpha"], r["k"], r["eps"], r["seed"], bool(r["reptile"])) == ("m3", 0.25, 5, 0.1, 1, True)
    assert r["n_params"] == 5e7 and r["n_params_nonembedding"] == 4e7
    assert r["flops_per_new_token"] == pytest.approx(sr.flops_per_new_token(sr.Spec("m3", 0.25, 5, 0.1, 1)))
    assert r["task_sequence"] == "en>fr>de"


def test_eval_table_is_wide_with_one_row_per_evaluation(collection) -> None:
    ev = collection.evals
    one = ev[ev["run_id"] == "alpha=0.0,eps=1.0,k=0,model=m1,seed=0"]
    assert len(one) == 1 + sr.STEPS_PER_TASK * len(sr.TASKS) // sr.EVAL_EVERY
    assert {"val_loss.en", "val_loss.fr", "val_loss.de", "flops_train", "flops_eval", "tokens", "forgetting_curve"} <= set(ev.columns)
    assert one["boundary"].sum() == 3
    assert one["val_loss.en"].iloc[0] == sr.L0
    last = one.iloc[-1]
    assert last["val_loss_mean"] == pytest.approx(collection.runs.set_index("run_id").loc[last["run_id"], "retained_loss"])
    assert (one["tokens"] == one["tokens_new"] + one["tokens_replay"]).all()


def test_tables_round_trip_through_csv_and_parquet(collection, tmp_path: Path) -> None:
    paths = write_tables(collection, tmp_path)
    assert sorted(p.name for p in paths) == ["evals.csv", "evals.parquet", "runs.csv", "runs.parquet"]
    back = pd.read_parquet(tmp_path / "runs.parquet")
    pd.testing.assert_series_equal(back["retained_loss"], collection.runs["retained_loss"], check_names=False)
    csv = pd.read_csv(tmp_path / "evals.csv")
    assert len(csv) == len(collection.evals)


def test_find_run_dirs_accepts_globs_and_dedupes(sweep_dir: Path) -> None:
    a = find_run_dirs([sweep_dir])
    b = find_run_dirs([str(sweep_dir / "alpha=0.25*"), str(sweep_dir)])
    assert a == b
    assert len(find_run_dirs([str(sweep_dir / "alpha=0.5*")])) == sum(s.alpha == 0.5 for s in sr.sweep_specs())
    assert find_run_dirs([sweep_dir / "does-not-exist"]) == []


def test_no_runs_found_is_a_clear_problem(tmp_path: Path) -> None:
    col = collect([tmp_path], progress=False)
    assert col.runs.empty
    assert any("no runs found" in p and "config.yaml" in p for p in col.problems)


def test_tampered_summary_is_detected(tmp_path: Path) -> None:
    run = sr.write_run(tmp_path, sr.Spec("m2"))
    summary = json.loads((run / "summary.json").read_text())
    summary["metrics"]["forgetting"] += 0.01
    (run / "summary.json").write_text(json.dumps(summary))
    col = collect([tmp_path], progress=False)
    assert col.runs["summary_agrees"].tolist() == [False]
    assert any("differ" in p for p in col.problems)


def test_truncated_line_and_missing_summary_are_flagged(tmp_path: Path) -> None:
    run = sr.write_run(tmp_path, sr.Spec("m2"))
    with (run / "metrics.jsonl").open("a") as fh:
        fh.write('{"event": "train", "step": 6')  # crash mid-write
    (run / "summary.json").unlink()
    rd = read_run(run)
    assert any("unreadable line" in p for p in rd.problems)
    assert any("no summary.json" in p for p in rd.problems)
    col = collect([tmp_path], progress=False)
    r = col.runs.iloc[0]
    assert r["status"] == "unknown" and r["usable"]  # all evaluations are there: still analysable
    assert math.isnan(r["n_params"])


def test_diverged_run_is_not_usable(tmp_path: Path) -> None:
    run = sr.write_run(tmp_path, sr.Spec("m2"))
    lines = (run / "metrics.jsonl").read_text().splitlines()
    last = json.loads(lines[-1])
    last["val_loss"]["en"] = float("nan")
    lines[-1] = json.dumps(last)
    (run / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    r = collect([tmp_path], progress=False).runs.iloc[0]
    assert r["complete"] and not r["usable"]
    assert "non-finite" in r["problems"]


def test_resumed_log_keeps_the_last_attempt() -> None:
    rec = lambda step, v, event="eval": {"event": event, "step": step, "v": v}  # noqa: E731
    log = [rec(0, "a"), rec(5, "a"), rec(10, "a"), rec(15, "a"),  # crashed after step 15, checkpoint at 10
           rec(11, "b", "train"), rec(15, "b"), rec(20, "b")]
    out = clean_resumed(log)
    assert [(r["step"], r["v"]) for r in out] == [(0, "a"), (5, "a"), (10, "a"), (11, "b"), (15, "b"), (20, "b")]
    dup = clean_resumed([rec(0, "a"), rec(5, "a"), rec(5, "b")])
    assert [(r["step"], r["v"]) for r in dup] == [(0, "a"), (5, "b")]


def test_resumed_run_collects_like_an_uninterrupted_one(tmp_path: Path) -> None:
    spec = sr.Spec("m3", alpha=0.25)
    run = sr.write_run(tmp_path / "a", spec)
    lines = (run / "metrics.jsonl").read_text().splitlines()
    # the first attempt logged up to line 14, then the run resumed from an earlier checkpoint
    crashed = lines[:14] + lines[8:]
    (run / "metrics.jsonl").write_text("\n".join(crashed) + "\n")
    clean = sr.write_run(tmp_path / "b", spec)
    a = collect([run], progress=False).runs.iloc[0]
    b = collect([clean], progress=False).runs.iloc[0]
    assert a["retained_loss"] == b["retained_loss"] and a["n_evals"] == b["n_evals"]
    assert "repeated by a resume" in a["problems"]


def test_mixed_task_sequences_get_their_own_columns(tmp_path: Path, sweep_dir: Path) -> None:
    shutil.copytree(sweep_dir / "alpha=0.0,eps=1.0,k=0,model=m1,seed=0", tmp_path / "a")
    other = tmp_path / "b"
    shutil.copytree(sweep_dir / "alpha=0.0,eps=1.0,k=0,model=m2,seed=0", other)
    text = (other / "metrics.jsonl").read_text().replace('"de"', '"ja"')
    (other / "metrics.jsonl").write_text(text)
    (other / "config.yaml").write_text((other / "config.yaml").read_text().replace("de", "ja"))
    col = collect([tmp_path], progress=False)
    assert sorted(col.runs["task_sequence"]) == ["en>fr>de", "en>fr>ja"]
    assert np.isnan(col.runs.set_index("task_sequence").loc["en>fr>ja", "loss_end.de"])
