"""`+sweep=replay_vs_scale_quick` end to end: 12 real runs on the built-in Bible data, then the analysis report."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from sweep_helpers import REPO, run_mer


@pytest.mark.slow
def test_the_quick_replay_vs_scale_study_runs_and_is_analysed(tmp_path):
    env_data = {"MER_DATA_DIR": str(tmp_path / "data")}  # the preset's own data (the default corpus), fresh
    os.environ.update(env_data)
    try:
        run_mer(["-m", "+sweep=replay_vs_scale_quick", f"runs_dir={tmp_path / 'runs'}"], timeout=900)
    finally:
        os.environ.pop("MER_DATA_DIR")
    summaries = {p.parent.name: json.loads(p.read_text()) for p in (tmp_path / "runs").glob("*/summary.json")}
    configs = {p.parent.name: json.loads(p.read_text()) for p in (tmp_path / "runs").glob("*/config.json")}
    assert len(summaries) == 12 and {s["status"] for s in summaries.values()} == {"completed"}
    for name, summary in summaries.items():
        k = configs[name]["k"]
        expected = {t: (n // k if k else 0) for t, n in summary["steps_per_task"].items()}
        assert summary["reptile_steps_per_task"] == expected
        assert (min(expected.values()) > 0) == (k > 0)  # Reptile-on runs interpolated in every task
    # Every size scored on the same tokens through the same windows: one fingerprint.
    assert len({s["eval_fingerprint_id"] for s in summaries.values()}) == 1
    sizes = {configs[n]["model"]["name"]: s["n_params_nonembedding"] for n, s in summaries.items()}
    assert sorted(sizes) == ["cpu-0.3m", "cpu-0.5m", "cpu-1m"]

    page = tmp_path / "results" / "quick.md"
    report = subprocess.run([sys.executable, "-m", "analysis.report", str(tmp_path / "runs"), "--out",
                             str(tmp_path / "report"), "--n-boot", "20", "--results-page", str(page), "--machine", "CI"],
                            cwd=REPO, capture_output=True, text=True, timeout=600)
    assert report.returncode == 0, report.stderr[-3000:]
    import pandas as pd

    runs = pd.read_csv(tmp_path / "report" / "data" / "runs.csv")
    assert len(runs) == 12
    assert (runs["reptile"] == (runs["k"] > 0)).all()  # "Reptile" = interpolated, here exactly the k=8 runs
    # No part of the analysis crashed, and the page has every section, the four claims and small figures.
    assert not (tmp_path / "report" / "errors.log").exists()
    text = page.read_text()
    assert "internal error" not in text and "internal error" not in (tmp_path / "report" / "report.md").read_text()
    for section in ("## What was run", "## The paper's four claims", "## Replay versus a bigger model", "## Figures"):
        assert section in text
    for key in "abcd":
        assert f"### ({key})" in text
    assert "python -m mer.run -m +sweep=replay_vs_scale_quick" in text and "--results-page" in text
    # One seed per size (and 3 sizes for 3 parameters): no interval and no fit, so no better/worse verdict anywhere.
    verdicts = text.split("## Replay versus a bigger model")[1].split("\n## ")[0]
    assert "better than scaling" not in verdicts and "worse than scaling" not in verdicts
    assert "Undetermined for" in verdicts or "no verdict" in verdicts
    figures = list((tmp_path / "results" / "quick").glob("*.png"))
    assert figures and all(f.stat().st_size < 200_000 for f in figures)
