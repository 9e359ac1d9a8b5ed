"""Gradient alignment in the analysis (analysis/alignment.py) and provenance (analysis/provenance.py), on synthetic
runs whose cosines and commits are known."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import synthetic_runs as sr
from matplotlib.colors import to_rgba

from analysis import palette
from analysis.alignment import FIGURE, alignment_columns, alignment_table, plot_alignment
from analysis.collect import collect
from analysis.provenance import mixed_code_warning, provenance_columns
from analysis.report import build_report

COMMIT_A, COMMIT_B = "a" * 40, "b" * 40


def _specs(alignment: bool = True, commit_b_for: int | None = None) -> list[sr.Spec]:
    """A no-replay family over 4 sizes (so the report fits) and, on m3, alpha 0 / 0.25 / 0.5 with Reptile off and on,
    2 seeds; all with alignment records when `alignment`. Seed `commit_b_for` of m3 ran commit B, the rest A."""
    specs = [sr.Spec(model=m, seed=s, commit=COMMIT_A, alignment=alignment) for m in ("m1", "m2", "m4", "m5")
             for s in range(2)]
    for alpha in (0.0, 0.25, 0.5):
        for k, eps in ((0, 1.0), (5, 0.1)):
            for s in range(2):
                commit = COMMIT_B if s == commit_b_for else COMMIT_A
                specs.append(sr.Spec(model=sr.REPLAY_MODEL, alpha=alpha, k=k, eps=eps, seed=s, commit=commit,
                                     alignment=alignment))
    return specs


def test_columns_of_the_evaluation_records():
    records = [{"grad_cosine": {}, "grad_cosine_mean": None}, {"grad_cosine": {"en": -0.5}, "grad_cosine_mean": -0.5},
               {"val_loss": {}}]
    cols = alignment_columns(records, ["en", "fr"])
    assert np.isnan(cols["grad_cosine_mean"][[0, 2]]).all() and cols["grad_cosine_mean"][1] == -0.5
    assert cols["grad_cosine.en"][1] == -0.5 and np.isnan(cols["grad_cosine.fr"]).all()


def test_table_and_figure_recover_the_known_cosines(tmp_path: Path):
    sr.write_sweep(tmp_path / "sweep", _specs())
    col = collect([tmp_path / "sweep"], progress=False)
    runs = col.runs[col.runs["model"] == sr.REPLAY_MODEL]
    table = alignment_table(runs, col.evals).set_index("method")
    assert len(table) == 6 and set(table["seeds"]) == {2}
    # Per evaluation from task 1 on: (3 tasks x 20 steps, evaluations every 5) -> 8 evaluations of tasks 1 and 2.
    assert set(table["evaluations"]) == {"8"}
    for alpha in (0.0, 0.25, 0.5):
        for reptile, label in ((False, ""), (True, ", Reptile k=5 eps=0.1")):
            truth = sr.true_cosine(sr.Spec(model="m3", alpha=alpha, k=5 if reptile else 0, eps=0.1 if reptile else 1.0))
            row = table.loc[f"m3, alpha={alpha:g}{label}"]
            assert row["mean cosine"] == f"{truth:.3f} ± 0.000" and row["at task ends"] == f"{truth:.3f} ± 0.000"
            assert float(row["lowest"]) == pytest.approx(truth, abs=1e-3)
    fig = plot_alignment(col.evals, runs)
    lines = [ln for ln in fig.axes[0].get_lines()
             if not ln.get_label().startswith("_") and ln.get_linestyle() != "None"]
    colors = palette.alpha_colors([0.0, 0.25, 0.5])
    by_label = {ln.get_label(): ln for ln in lines}
    assert set(by_label) == {f"alpha={a:g}, Reptile {r}" for a in (0, 0.25, 0.5) for r in ("off", "k=5 eps=0.1")}
    for alpha in (0.0, 0.25, 0.5):
        off, on = by_label[f"alpha={alpha:g}, Reptile off"], by_label[f"alpha={alpha:g}, Reptile k=5 eps=0.1"]
        assert to_rgba(off.get_color()) == to_rgba(colors[alpha]) == to_rgba(on.get_color())
        assert off.get_linestyle() == "-" and on.get_linestyle() != "-"
        assert np.allclose(off.get_ydata(), sr.true_cosine(sr.Spec(model="m3", alpha=alpha)))
        # x: new-data tokens of the evaluations from task 1 on (the first task has no earlier task)
        assert min(off.get_xdata()) > 0
    assert plot_alignment(col.evals.assign(grad_cosine_mean=math.nan), runs) is None


def test_report_adds_the_section_only_for_runs_with_records(tmp_path: Path):
    specs = _specs() + [sr.Spec(model=sr.REPLAY_MODEL, alpha=0.25, seed=9, commit=COMMIT_A)]  # one without
    sr.write_sweep(tmp_path / "sweep", specs)
    rep = build_report([tmp_path / "sweep"], tmp_path / "out", n_boot=0, progress=False)
    assert rep.errors == []
    text = (tmp_path / "out" / "report.md").read_text()
    assert "## Gradient alignment" in text and f"figures/{FIGURE}.png" in text
    assert (tmp_path / "out" / "figures" / f"{FIGURE}.png").stat().st_size > 1000
    assert (tmp_path / "out" / "tables" / "alignment.tex").exists()
    assert "1 usable run(s) have no alignment records" in text and "seed=9" in text.split("## Gradient alignment")[1]
    sr.write_sweep(tmp_path / "plain", _specs(alignment=False))
    build_report([tmp_path / "plain"], tmp_path / "plain_out", n_boot=0, progress=False)
    assert "Gradient alignment" not in (tmp_path / "plain_out" / "report.md").read_text()
    assert not (tmp_path / "plain_out" / "figures" / f"{FIGURE}.png").exists()


# ------------------------------------------------------------------------------------------ provenance
def test_provenance_columns():
    assert provenance_columns(None)["code_versions"] == "unknown"
    attempt = {"git_commit": COMMIT_A, "git_dirty": True, "command": "python -m mer.run k=5"}
    resumed = {**attempt, "git_commit": COMMIT_B, "git_dirty": False}
    cols = provenance_columns({"provenance": {**resumed, "attempts": [attempt, resumed]}})
    assert cols == {"git_commit": COMMIT_B, "git_dirty": False, "command": "python -m mer.run k=5", "attempts": 2,
                    "code_versions": f"{COMMIT_A[:12]}+dirty -> {COMMIT_B[:12]}"}


def test_report_shows_each_runs_commit_and_warns_about_mixed_commits(tmp_path: Path):
    sr.write_sweep(tmp_path / "one", _specs())
    rep = build_report([tmp_path / "one"], tmp_path / "one_out", n_boot=0, progress=False)
    text = (tmp_path / "one_out" / "report.md").read_text()
    assert "different code versions" not in text
    assert f"| {COMMIT_A[:12]} | 1 | python -m mer.run alpha=0.25 seed=1 |" in text  # the run table
    assert set(rep.collection.runs["git_commit"]) == {COMMIT_A}

    sr.write_sweep(tmp_path / "mixed", _specs(commit_b_for=1))
    rep = build_report([tmp_path / "mixed"], tmp_path / "mixed_out", n_boot=0, progress=False)
    text = (tmp_path / "mixed_out" / "report.md").read_text()
    problems = text.split("## Problems and notes")[1].split("\n## ")[0]
    warning = next(ln for ln in problems.splitlines() if "different code versions" in ln)
    assert f"{COMMIT_A[:12]}: " in warning and f"{COMMIT_B[:12]}: " in warning and "git diff" in warning
    assert "alpha=0.5,eps=0.1,k=5,model=m3,seed=1" in warning
    # Runs without provenance (older runs) are a version of their own.
    runs = rep.collection.runs.assign(code_versions=["unknown"] + list(rep.collection.runs["code_versions"][1:]))
    assert "unknown (no provenance in summary.json)" in mixed_code_warning(runs, "x")
    assert mixed_code_warning(rep.collection.runs[rep.collection.runs["git_commit"] == COMMIT_A], "x") is None
