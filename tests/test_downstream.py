"""Downstream evaluation through lm-evaluation-harness: `python -m mer.downstream`, `eval.downstream` during
training, the analysis' downstream table and figure. The harness is the optional extra `.[eval]`: CI installs it
and runs these; the import guard only keeps a core-only install's test run green."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("lm_eval")

from mer_testing import tiny_run_config  # noqa: E402

from mer.evaluation.harness import HarnessError, read_records  # noqa: E402
from mer.launch.runner import run_training  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def _train(cfg, name: str = "run") -> dict:
    return run_training(cfg, name, json.loads(json.dumps(dataclasses.asdict(cfg), default=str)))


@pytest.mark.slow
def test_mer_downstream_scores_every_exported_model_and_the_report_collects_it(exported_run, tmp_path):
    from analysis.downstream import downstream_table, read_downstream
    from analysis.report import build_report

    run_dir, _, summary = exported_run
    result = subprocess.run([sys.executable, "-m", "mer.downstream", str(run_dir), "--tasks", "bible_cloze",
                             "--limit", "4", "--batch-size", "16", "--device", "cpu"], capture_output=True, text=True,
                            timeout=900, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 0, result.stderr[-3000:]
    tasks = summary["tasks"]
    records = read_records(run_dir)
    # 5 models x (5 cloze tasks + the group) x (acc, acc_norm, acc_mutual_info)
    assert len(records) == 5 * 6 * 3
    for record in records:
        assert record["model"] == f"after_{record['after_task']}" and record["source"] == "mer.downstream"
        assert record["metric"] in ("acc", "acc_norm", "acc_mutual_info") and 0 <= record["value"] <= 1
        assert record["stderr"] is not None and record["limit"] == 4
        assert record["group"] == (record["task"] == "bible_cloze")
        assert record["n_samples"] == (None if record["group"] else 4)
    steps = [r["step"] for r in records if r["task"] == "bible_cloze_en" and r["metric"] == "acc_mutual_info"]
    assert steps == sorted(steps) and steps[-1] == summary["totals"]["steps"]  # in task order, the last is final

    collected, problems = read_downstream([("run", run_dir)])
    assert not problems and len(collected) == len(records)
    table = downstream_table(collected)
    assert table["model"].tolist() == [f"after_{t}" for t in tasks]
    assert [c for c in table.columns if c.startswith("bible_cloze")] == sorted(f"bible_cloze_{t} acc_mutual_info"
                                                                                for t in tasks)
    report = build_report([run_dir], tmp_path / "report", n_boot=0, progress=False)
    text = (tmp_path / "report" / "report.md").read_text()
    assert "## Downstream accuracy" in text and "after_en" in text
    assert (tmp_path / "report" / "figures" / "downstream_after_each_task.png").is_file()
    assert not report.errors


@pytest.mark.slow
def test_downstream_during_training_records_each_boundary_without_changing_training(small_bible, tmp_path, caplog):
    from mer.model.llama import get_preset

    two = dataclasses.replace(small_bible[0], tasks=small_bible[0].tasks[:2])
    model = get_preset("cpu-0.5m", seq_len=128)  # long enough for every cloze item
    plain = tiny_run_config(two, tmp_path / "plain", model=model)
    scored = tiny_run_config(two, tmp_path / "scored", model=model, eval=dataclasses.replace(
        plain.eval, downstream=["bible_cloze_en", "bible_cloze_fr"], downstream_limit=3))
    expected = _train(plain)
    with caplog.at_level(logging.INFO):
        summary = _train(scored)
    assert summary["loss_matrix"] == expected["loss_matrix"]  # the harness' seeding does not reach training
    records = read_records(tmp_path / "scored" / "run")
    assert {(r["model"], r["task"]) for r in records} == {(f"after_{t}", f"bible_cloze_{c}") for t in ("en", "fr")
                                                        for c in ("en", "fr")}
    assert {r["source"] for r in records} == {"training"} and {r["n_samples"] for r in records} == {3}
    extra_tokens = summary["totals"]["tokens_eval"] - expected["totals"]["tokens_eval"]
    extra_flops = summary["totals"]["flops_eval"] - expected["totals"]["flops_eval"]
    assert extra_tokens >= 2 * 2 * 3 * 4 * 8  # 2 boundaries x 2 tasks x 3 items x 4 endings, 8+ tokens each
    assert extra_flops == extra_tokens * (expected["totals"]["flops_eval"] / expected["totals"]["tokens_eval"])
    assert "downstream after fr: bible_cloze_en acc_mutual_info" in caplog.text
    # The progress line of fr's last step (always logged) shows the scores of the boundary before it, en's.
    assert "| downstream after en: bible_cloze_en acc_mutual_info" in caplog.text


@pytest.mark.slow
def test_an_unknown_downstream_task_is_refused_before_training(small_bible, tmp_path):
    cfg = tiny_run_config(small_bible[0], tmp_path, eval=dataclasses.replace(
        tiny_run_config(small_bible[0], tmp_path).eval, downstream=["no_such_task_anywhere"]))
    with pytest.raises(HarnessError, match=r"unknown harness task\(s\) \['no_such_task_anywhere'\]"):
        _train(cfg)
    assert not (tmp_path / "run" / "metrics.jsonl").exists()


@pytest.mark.slow
@pytest.mark.timeout(1800)  # trains 300,000 tokens and scores 345 items: minutes on 2 cores, more under load
def test_a_model_beats_chance_on_the_cloze_of_the_language_it_learned(tmp_path):
    """The default model (cpu-2m, default tokenizer) trained on English alone, 300,000 tokens, scored by the harness on
    all 345 items of bible_cloze_en: acc_mutual_info clears chance (0.25) by four standard errors and more."""
    from mer.config.run_config import EvalConfig, RunConfig
    from mer.data.config import DataConfig, TaskConfig
    from mer.evaluation.downstream import score_run
    from mer.model.llama import get_preset
    from mer.optim.schedule import OptimConfig

    data = DataConfig(tasks=[TaskConfig(name="en")], data_dir=str(tmp_path / "data"), budget_tokens=300_000,
                      eval_tokens=4097)
    optim = OptimConfig(lr=3e-3, min_lr=3e-4, batch_size=16)  # the default run's (conf/optim/default.yaml)
    cfg = RunConfig(alpha=0.0, model=get_preset("cpu-2m"), data=data, optim=optim, eval=EvalConfig(every=100_000),
                    runs_dir=str(tmp_path / "runs"), export_each_task=True, device="cpu", checkpoint_every=100_000,
                    log_every=100)
    _train(cfg)
    records = score_run(tmp_path / "runs" / "run", ["bible_cloze_en"], batch_size=32, device="cpu")
    scores = {r["metric"]: r for r in records if r["model"] == "after_en"}
    mutual = scores["acc_mutual_info"]
    assert mutual["n_samples"] == 345
    assert mutual["value"] >= 0.35 and (mutual["value"] - 0.25) / mutual["stderr"] >= 4, scores
