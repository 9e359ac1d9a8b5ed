"""The command-line entry points, run as a user runs them: in a subprocess, from another directory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _run(args: list[str], cwd: Path, env_extra: dict | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, **(env_extra or {})}
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def test_prepare_a_user_corpus_from_another_directory(tmp_path):
    for lang, words in (("en", "the cat sat on a mat and looked at the dog"), ("de", "der Hund und die Katze sitzen im Haus")):
        folder = tmp_path / "corpus" / lang
        folder.mkdir(parents=True)
        with open(folder / "part-0.jsonl", "w") as handle:
            for i in range(400):
                handle.write(json.dumps({"text": f"{words} {i} " * 5}) + "\n")
    tasks = (f"data.tasks=[{{name:en,source:files,train_files:[{tmp_path}/corpus/en]}},"
             f"{{name:de,source:files,train_files:['{tmp_path}/corpus/de/*.jsonl']}}]")
    # Tiny test data: 1% of 400 documents held out is a few hundred tokens, under the default data.min_val_tokens.
    args = ["-m", "mer.data.prepare", tasks, f"data.data_dir={tmp_path}/cache", "data.tokenizer.vocab_size=300",
            "data.tokenizer.train_chars_per_task=20000", "data.min_val_tokens=2"]
    first = _run(args, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "en" in first.stdout and "train tokens" in first.stdout
    stamp = next((tmp_path / "cache" / "shards").rglob("train.bin")).stat().st_mtime_ns
    second = _run(args, cwd=tmp_path)
    def table(out: str) -> list[str]:  # the tokens table, without the line of pieces prepared now
        return [line for line in out[out.index("task "):out.index("done in")].splitlines()
                if "piece(s) prepared now" not in line]

    assert second.returncode == 0 and table(second.stdout) == table(first.stdout)
    assert "task en: 1 piece(s) prepared now" in first.stdout and "prepared now" not in second.stdout
    assert "training a 300-token" in first.stdout and "training a" not in second.stdout
    assert next((tmp_path / "cache" / "shards").rglob("train.bin")).stat().st_mtime_ns == stamp
    assert not (tmp_path / "outputs").exists()  # Hydra leaves nothing behind in the working directory


def test_prepare_reports_a_bad_source_clearly(tmp_path):
    result = _run(["-m", "mer.data.prepare", "data.tasks=[{name:xx,source:files,train_files:[/nonexistent/x.txt]}]",
                   f"data.data_dir={tmp_path}"], cwd=tmp_path)
    assert result.returncode == 2
    assert "task 'xx': train_files path '/nonexistent/x.txt' matches no file" in result.stderr


def test_bad_config_value_fails_before_any_work(tmp_path):
    result = _run(["-m", "mer.run", "alpha=1.5", f"runs_dir={tmp_path}/runs", f"data.data_dir={tmp_path}/data"],
                  cwd=tmp_path)
    assert result.returncode != 0
    assert "alpha=1.5 must be in [0, 1)" in result.stderr
    assert not (tmp_path / "data").exists() and not (tmp_path / "runs" / "alpha=1.5").exists()


TINY = ["model=cpu-0.5m", "model.seq_len=32", "optim.batch_size=8", "data.budget_tokens=1024", "data.eval_tokens=65",
        "eval.every=1000", "data.tokenizer.vocab_size=512", "data.tokenizer.train_chars_per_task=40000",
        "+data.tasks.0.max_train_documents=30"]


def test_the_card_grid_on_the_default_config_is_refused_point_by_point(tmp_path):
    """`python -m mer.run -m alpha=0,0.25,0.5 k=100,500,1000` on the default config: no task has 100 steps, so every
    point is refused before any work (no data prepared, nothing trained) and the sweep ends with a table of 9."""
    args = ["-m", "mer.run", "-m", "alpha=0,0.25,0.5", "k=100,500,1000", f"runs_dir={tmp_path}/runs",
            f"data.data_dir={tmp_path}/data"]
    result = _run(args, cwd=tmp_path, timeout=600)
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "9 of 9 points" in output and output.count("cannot fire") >= 9
    assert not (tmp_path / "data").exists()
    summaries = [json.loads(p.read_text()) for p in (tmp_path / "runs").glob("*/summary.json")]
    assert len(summaries) == 9 and {s["status"] for s in summaries} == {"refused"}
    assert not list((tmp_path / "runs").glob("*/checkpoint"))


@pytest.mark.slow
def test_the_card_grid_on_the_cpu_preset_gives_nine_distinct_reptile_runs(tmp_path):
    """`+experiment=cpu_paper alpha=0,0.25,0.5 k=100,500,1000`, shrunk to two tasks of 32-token blocks (1000 steps per
    task at alpha=0 as in the preset): 9 completed runs, Reptile fired in every task, no two runs alike."""
    shrink = ["model.seq_len=32", "data.budget_tokens=128000", "data.tasks=[{name:en},{name:fr}]", "eval.every=500",
              "data.eval_tokens=2048", "data.tokenizer.vocab_size=512", "data.tokenizer.train_chars_per_task=40000",
              "threads=1"]
    args = ["-m", "mer.run", "-m", "+experiment=cpu_paper", "alpha=0,0.25,0.5", "k=100,500,1000",
            f"runs_dir={tmp_path}/runs", f"data.data_dir={tmp_path}/data", *shrink]
    result = _run(args, cwd=tmp_path, timeout=1500)
    assert result.returncode == 0, result.stderr[-3000:]
    summaries = [json.loads(p.read_text()) for p in sorted((tmp_path / "runs").glob("*/summary.json"))]
    assert len(summaries) == 9 and {s["status"] for s in summaries} == {"completed"}
    configs = [json.loads(p.read_text()) for p in sorted((tmp_path / "runs").glob("*/config.json"))]
    assert {(c["alpha"], c["k"]) for c in configs} == {(a, k) for a in (0, 0.25, 0.5) for k in (100, 500, 1000)}
    for config, summary in zip(configs, summaries):
        steps = summary["steps_per_task"]
        assert min(steps.values()) >= 1000
        # The anchor is reset per task: floor(steps / k) interpolations in every task, none lost.
        assert summary["reptile_steps_per_task"] == {t: n // config["k"] for t, n in steps.items()}
        assert all(n > 0 for n in summary["reptile_steps_per_task"].values())
    retained = [s["metrics"]["retained_loss"] for s in summaries]
    assert len(set(retained)) == 9, retained  # nine different runs, not three repeated
    again = _run(args, cwd=tmp_path, timeout=600)  # a re-launch only skips
    assert again.returncode == 0 and again.stdout.count("is already completed") + again.stderr.count("is already completed") == 9


@pytest.mark.slow
def test_sigterm_checkpoints_and_the_same_command_resumes(tmp_path):
    import signal
    import time

    tasks = "data.tasks=[{name:en,max_train_documents:60},{name:fr,max_train_documents:60}]"
    args = ["-m", "mer.run", tasks, f"runs_dir={tmp_path}/runs", f"data.data_dir={tmp_path}/data", "checkpoint_every=1000",
            "log_every=5", *[a for a in TINY if not a.startswith(("+data.tasks", "data.budget_tokens"))],
            "data.budget_tokens=40000"]
    env = {**os.environ}
    proc = subprocess.Popen([sys.executable, *args], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    found = []
    while time.time() < deadline and not found:  # the run directory is named after the overrides
        found = [m for m in (tmp_path / "runs").glob("*/metrics.jsonl") if m.read_text().count('"train"') >= 2]
        time.sleep(0.2)
    assert found, "the run never logged two train lines"
    metrics = found[0]
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err[-2000:]
    summary = json.loads((metrics.parent / "summary.json").read_text())
    assert summary["status"] == "stopped" and "signal 15" in summary["error"]
    stopped_at = json.loads(metrics.read_text().splitlines()[-1])["step"]
    resumed = _run(args, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resumed from checkpoint at step" in resumed.stderr + resumed.stdout
    steps = [json.loads(line)["step"] for line in metrics.read_text().splitlines() if '"train"' in line]
    assert steps == sorted(steps) and len(steps) == len(set(steps))  # continued, not restarted
    assert max(steps) > stopped_at
