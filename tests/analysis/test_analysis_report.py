"""The one command, end to end on synthetic sweeps, including bad inputs."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import synthetic_runs as sr

from analysis.report import build_report, main

FIGURES = ("task_losses", "loss_vs_flops", "stability_plasticity", "forgetting_alpha_reptile")


def test_report_writes_every_output(report) -> None:
    out = report.out
    assert report.errors == []
    for name in ("runs.csv", "runs.parquet", "evals.csv", "evals.parquet"):
        assert (out / "data" / name).stat().st_size > 0
    for name in ("retained", "learned", "forgetting", "fits", "compare"):
        assert (out / "tables" / f"{name}.md").exists() and (out / "tables" / f"{name}.tex").exists()
    for name in FIGURES:
        for ext in ("png", "pdf"):
            assert (out / "figures" / f"{name}.{ext}").stat().st_size > 1000, name
    assert (out / "report.md").exists()
    assert not (out / "errors.log").exists()


def test_report_md_states_each_rate(report) -> None:
    text = (report.out / "report.md").read_text()
    for alpha in ("alpha=0.25", "alpha=0.5"):
        lines = [ln for ln in text.splitlines() if ln.startswith(f"- m3, {alpha}:")]
        assert len(lines) == 2, alpha  # retained and learned loss
    assert "m3, alpha=0.25: replay reaches the retained loss" in text
    assert "better than scaling" in text and "worse than scaling" in text
    assert "95% CI" in text
    # broken runs are listed, not dropped
    assert "alpha=0.25,eps=1.0,k=0,model=m2,seed=7" in text and "CUDA out of memory" in text
    assert "alpha=0.5,eps=1.0,k=0,model=m4,seed=7" in text
    assert "agree with summary.json for 36 of 36" in text
    for name in FIGURES:
        assert f"figures/{name}.png" in text


def test_fits_json_holds_parameters_near_truth(report) -> None:
    fits = json.loads((report.out / "fits.json").read_text())
    nr = next(f for f in fits["fits"] if f["family"] == "no replay (model size)" and f["metric"] == "retained_loss"
              and f["x"] == "flops_per_new_token")
    assert nr["converged"]
    assert nr["params"]["E"] == pytest.approx(sr.RETAINED["E"], abs=0.1)
    assert nr["params"]["b"] == pytest.approx(sr.RETAINED["b"], abs=0.02)
    lo, hi = nr["ci95"]["b"]
    assert lo <= nr["params"]["b"] <= hi
    assert {c["setting"] for c in fits["comparisons"]} >= {"m3, alpha=0.25", "m3, alpha=0.5"}
    # replay families of this synthetic truth are not power laws: reported as failed, not as numbers
    failed = [f for f in fits["fits"] if f["family"] == "replay, m3"]
    assert failed and all(not f["converged"] and f["reason"] for f in failed)


def test_no_runs_found(tmp_path: Path, capsys) -> None:
    rc = main([str(tmp_path / "empty*"), "--out", str(tmp_path / "out"), "--no-progress"])
    assert rc == 1
    text = (tmp_path / "out" / "report.md").read_text()
    assert "no runs found" in text and "pass the sweep folder" in text
    assert "no runs found" in capsys.readouterr().err


def _small_sweep(root: Path, models: list[str]) -> None:
    specs = [sr.Spec(m, seed=s) for m in models for s in range(2)]
    specs += [sr.Spec(sr.REPLAY_MODEL, alpha=0.25, seed=s) for s in range(2)]
    sr.write_sweep(root, specs)


def test_too_few_points_is_explained_and_the_rest_is_produced(tmp_path: Path) -> None:
    _small_sweep(tmp_path / "sweep", ["m2", "m3"])
    rep = build_report([tmp_path / "sweep"], tmp_path / "out", n_boot=5, progress=False)
    assert rep.errors == []
    text = (tmp_path / "out" / "report.md").read_text()
    assert "too few points" in text and "add runs at more scales" in text
    assert "Undetermined for" in text  # the settings of one failed fit share one line
    problems = text.split("## Problems and notes")[1].split("\n## ")[0]
    fit_lines = [ln for ln in problems.splitlines() if ln.startswith("- fit of")]
    assert len(fit_lines) == 2 and "affects 3:" in fit_lines[0]  # once per metric, naming the fits it affects
    assert (tmp_path / "out" / "tables" / "retained.md").exists()
    assert (tmp_path / "out" / "figures" / "task_losses.png").exists()
    assert (tmp_path / "out" / "figures" / "forgetting_alpha_reptile.png").exists()  # m3 has two alphas


def test_mixed_task_sequences_are_reported(tmp_path: Path) -> None:
    _small_sweep(tmp_path / "a", ["m1", "m2", "m3", "m4"])
    other = tmp_path / "b" / "ja-run"
    shutil.copytree(tmp_path / "a" / "alpha=0.0,eps=1.0,k=0,model=m1,seed=0", other)
    (other / "config.yaml").write_text((other / "config.yaml").read_text().replace("name: de", "name: ja"))
    rep = build_report([tmp_path / "a", tmp_path / "b"], tmp_path / "out", n_boot=0, progress=False)
    assert rep.errors == []
    assert rep.sequence == "en>fr>de"
    text = (tmp_path / "out" / "report.md").read_text()
    assert "2 different task sequences are mixed" in text and "run the report once per task sequence" in text
    assert "ja-run" in text
    assert "ja-run" not in set(rep.usable["run_id"])
    assert len(rep.comparisons) == 2  # still compared, without intervals (n_boot=0), so without a verdict
    assert {c.verdict for c in rep.comparisons} == {"no verdict"}
    assert "n_boot=0" in rep.comparisons[0].interval_note


def test_optuna_study_figures(tmp_path: Path) -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = optuna.storages.InMemoryStorage()
    single = optuna.create_study(storage=storage, study_name="single")
    single.optimize(lambda t: (t.suggest_float("alpha", 0, 0.5) - 0.2) ** 2 + t.suggest_int("k", 0, 1000) / 1e4, n_trials=12)
    multi = optuna.create_study(storage=storage, study_name="multi", directions=["minimize", "minimize"])
    multi.optimize(lambda t: ((a := t.suggest_float("alpha", 0, 0.5)), 1 - a + t.suggest_float("eps", 0.1, 1)), n_trials=12)
    optuna.create_study(storage=storage, study_name="empty")
    from analysis.study import study_figures

    files, problems = study_figures(storage, None, tmp_path)
    names = {p.name for p in files}
    for n in ("optuna_single_history.png", "optuna_single_importance.pdf", "optuna_multi_pareto_front.png",
              "optuna_multi_importance_1.png", "optuna_multi_history_0.pdf"):
        assert n in names
    assert problems == ["Optuna study 'empty' has no completed trial; nothing to plot"]
    _, bad = study_figures("sqlite:///" + str(tmp_path / "nope" / "x.db"), None, tmp_path)
    assert bad and "cannot be opened" in bad[0]


def test_analysis_never_imports_torch() -> None:
    code = ("import sys; import analysis.report, analysis.study, analysis.collect, mer.evaluation.metrics; "
            "import analysis.figures; assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.slow
def test_cli_with_sqlite_study(tmp_path: Path) -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url = f"sqlite:///{tmp_path / 'study.db'}"
    study = optuna.create_study(storage=url, study_name="mer")
    study.optimize(lambda t: t.suggest_float("alpha", 0, 0.5), n_trials=10)
    _small_sweep(tmp_path / "sweep", ["m1", "m2", "m3", "m4"])
    rc = subprocess.run([sys.executable, "-m", "analysis.report", str(tmp_path / "sweep"), "--out", str(tmp_path / "out"),
                         "--n-boot", "20", "--study", url, "--no-progress"], capture_output=True, text=True)
    assert rc.returncode == 0, rc.stderr
    assert (tmp_path / "out" / "figures" / "optuna_mer_history.png").exists()
    assert "optuna_mer_history" in (tmp_path / "out" / "report.md").read_text()


def test_results_page_is_written_from_the_runs(sweep_dir: Path, tmp_path: Path) -> None:
    page = tmp_path / "docs" / "results" / "synthetic.md"
    rep = build_report([sweep_dir], tmp_path / "out", n_boot=40, progress=False, results_page=page,
                       command="python -m analysis.report SWEEP --results-page PAGE", machine="a test machine")
    assert rep.errors == []
    text = page.read_text()
    assert "_Generated from the runs by `python -m analysis.report SWEEP --results-page PAGE`" in text
    assert "- Machine: a test machine; software: " in text
    for key in "abcd":
        assert f"### ({key})" in text
    assert [c.key for c in rep.claims] == ["a", "b", "c", "d"]
    # The synthetic truth: alpha=0.25 is better than scaling on retained loss and alpha=0.5 worse.
    assert next(c for c in rep.claims if c.key == "d").verdict == "supports"
    pngs = sorted((page.parent / "synthetic").glob("*.png"))
    assert {p.stem for p in pngs} == {p.stem for p in rep.files if p.parent.name == "figures" and p.suffix == ".png"}
    assert all(p.stat().st_size < 200_000 for p in pngs)
    assert all(f"](synthetic/{p.name})" in text for p in pngs)
    assert "## The paper's four claims" in (tmp_path / "out" / "report.md").read_text()


def _report_in_a_terminal(args: list[str]) -> str:
    """`python -m analysis.report <args>` with its stderr on a pseudo-terminal, as a user sees it; all it printed."""
    import fcntl
    import os
    import pty
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))  # 0 columns: tqdm would draw nothing
    proc = subprocess.Popen([sys.executable, "-m", "analysis.report", *args], stdout=subprocess.DEVNULL, stderr=slave)
    os.close(slave)
    chunks = []
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # the terminal closed: the process ended
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(master)
    assert proc.wait(timeout=600) == 0, b"".join(chunks).decode(errors="replace")[-3000:]
    return b"".join(chunks).decode(errors="replace")


def test_i23_22_bootstrap_bar_reaches_the_end_and_is_quiet_in_a_log(tmp_path: Path) -> None:
    """Issue 23 item 22: one seed per size (the quick sweep) gives no bootstrap interval anywhere; the bar counted
    only refits that ran, so it sat at 0%. In a terminal it now ends at 100%; in a log (no terminal) it prints
    nothing, where it printed its 0% line twice."""
    sr.write_sweep(tmp_path / "sweep", [sr.Spec(m, seed=0) for m in ("m1", "m2", "m3", "m4")])
    args = [str(tmp_path / "sweep"), "--out", str(tmp_path / "out"), "--n-boot", "40"]
    shown = _report_in_a_terminal(args)
    states = [part for part in shown.replace("\n", "\r").split("\r") if part.startswith("bootstrap fits")]
    assert states and "100%" in states[-1], states
    logged = subprocess.run([sys.executable, "-m", "analysis.report", *args], capture_output=True, text=True)
    assert logged.returncode == 0, logged.stderr[-3000:]
    assert "bootstrap fits" not in logged.stderr + logged.stdout


def test_i23_22_command_column_names_the_module(tmp_path: Path) -> None:
    """Issue 23 item 22: runs recorded `sys.argv`, whose first word is the file `.../mer/run.py` under `python -m
    mer.run`; the report's command column shows `python -m mer.run ...` (also for such older records)."""
    from analysis.provenance import provenance_columns

    summary = {"provenance": {"git_commit": "a" * 40, "git_dirty": False,
                              "command": "/home/u/mer/mer/run.py -m alpha=0,0.5 'data.tasks=[{name:en}]'"}}
    assert provenance_columns(summary)["command"] == "python -m mer.run -m alpha=0,0.5 'data.tasks=[{name:en}]'"
    summary["provenance"]["command"] = "/opt/venv/lib/python3.12/site-packages/mer/data/prepare.py data.x=1"
    assert provenance_columns(summary)["command"] == "python -m mer.data.prepare data.x=1"
    summary["provenance"]["command"] = "python -m mer.run k=0"  # already a module: unchanged
    assert provenance_columns(summary)["command"] == "python -m mer.run k=0"
