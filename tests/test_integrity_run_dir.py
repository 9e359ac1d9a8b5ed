"""A damaged run directory is refused before any training, naming the file and a fix that works (the test runs it).

Real corruptions of real files: state.pt truncated or with flipped bits, metrics.jsonl cut, shortened or
overwritten, the checkpoint deleted; each fix printed is run here, and the run then ends exactly like an
uninterrupted one (docs/run_directory.md, "What is verified when")."""

from __future__ import annotations

import dataclasses
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from mer_testing import tiny_run_config

from mer.launch.runner import run_training
from mer.rundir.integrity import RunDirectoryDamaged
from mer.training.trainer import Trainer

REPO = Path(__file__).resolve().parents[1]
TIMING = ("wall_time", "tokens_per_s", "data_wait_s", "mfu")


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """One torch thread: on a machine shared by many processes, more threads make these tiny runs ten times slower."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _config(small_bible, runs_dir: Path, **overrides):
    # Two tasks of 3 steps (512 tokens / 6 new blocks of 32): a checkpoint at step 2 and 4, one at each boundary.
    data = dataclasses.replace(small_bible[0], tasks=small_bible[0].tasks[:2])
    fields = dict(budget_tokens=512, checkpoint_every=2, log_every=1, peak_flops=1e12)
    return tiny_run_config(data, runs_dir, **{**fields, **overrides})


def _train(cfg) -> dict:
    resolved = json.loads(json.dumps(dataclasses.asdict(cfg), default=str))
    return run_training(cfg, "run", resolved)


def _records(run: Path) -> list[dict]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k not in TIMING} for line in lines]


@pytest.fixture(scope="module")
def reference_run(small_bible, tmp_path_factory) -> Path:
    """An uninterrupted, completed run (its directory)."""
    runs = tmp_path_factory.mktemp("reference")
    _train(_config(small_bible, runs))
    return runs / "run"


@pytest.fixture(scope="module")
def reference(reference_run):
    """The records of an uninterrupted run: every repaired run must end with exactly these."""
    return _records(reference_run)


def _interrupted(small_bible, tmp_path, monkeypatch, after_steps: int):
    """A run killed after `after_steps` optimizer steps (no checkpoint at the kill: like kill -9 mid-task)."""
    cfg = _config(small_bible, tmp_path)
    original, calls = Trainer.train_step, {"n": 0}

    def killed(self, task):
        if calls["n"] == after_steps:
            raise KeyboardInterrupt("killed")
        calls["n"] += 1
        return original(self, task)

    monkeypatch.setattr(Trainer, "train_step", killed)
    with pytest.raises(KeyboardInterrupt):
        _train(cfg)
    monkeypatch.setattr(Trainer, "train_step", original)
    return cfg, tmp_path / "run"


def _run_the_fix(message: str) -> None:
    """Run the command the message tells the user to run, exactly as printed."""
    command = re.search(r"`(python -m mer\.start_over [^`]+)`", message).group(1)
    args = shlex.split(command)
    done = subprocess.run([sys.executable, *args[1:]], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "run the same training command again" in done.stdout


def _refused_untouched(cfg, run: Path, pattern: str) -> str:
    """The relaunch is refused with `pattern`, and nothing in the run directory changed."""
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    with pytest.raises(RunDirectoryDamaged, match=pattern) as refused:
        _train(cfg)
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before
    return str(refused.value)


def test_bit_flips_in_state_pt_are_refused_and_starting_over_works(small_bible, tmp_path, monkeypatch, reference):
    cfg, run = _interrupted(small_bible, tmp_path, monkeypatch, after_steps=5)
    state = run / "checkpoint" / "state.pt"
    data = bytearray(state.read_bytes())
    for offset in (len(data) // 3, len(data) // 2, 2 * len(data) // 3):
        data[offset] ^= 0x10  # three flipped bits deep inside the tensors: torch.load would read them silently
    state.write_bytes(bytes(data))
    message = _refused_untouched(cfg, run, r"state\.pt is damaged: its sha256 is .*python -m mer\.start_over")
    assert str(state) in message
    _run_the_fix(message)
    assert [p.name for p in run.glob("metrics.jsonl.discarded-*")] and not (run / "checkpoint").exists()
    assert _train(cfg)["status"] == "completed"
    assert _records(run) == reference


def test_truncated_state_pt_is_refused(small_bible, tmp_path, monkeypatch, reference):
    cfg, run = _interrupted(small_bible, tmp_path, monkeypatch, after_steps=4)
    state = run / "checkpoint" / "state.pt"
    with open(state, "r+b") as handle:
        handle.truncate(state.stat().st_size // 2)
    message = _refused_untouched(cfg, run, r"state\.pt has \d+ bytes, its checkpoint manifest says \d+ .*start_over")
    _run_the_fix(message)
    _train(cfg)
    assert _records(run) == reference


def test_metrics_shorter_than_the_checkpoint_is_refused_never_padded(small_bible, tmp_path, monkeypatch, reference):
    cfg, run = _interrupted(small_bible, tmp_path, monkeypatch, after_steps=5)
    metrics = run / "metrics.jsonl"
    lines = metrics.read_bytes().splitlines(keepends=True)
    metrics.write_bytes(b"".join(lines[:2]))  # the log lost records the checkpoint (step 4) had seen
    message = _refused_untouched(cfg, run, r"metrics\.jsonl has \d+ bytes, fewer than the \d+ the checkpoint has seen")
    assert b"\0" not in metrics.read_bytes()
    _run_the_fix(message)
    _train(cfg)
    assert _records(run) == reference


def test_metrics_overwritten_at_the_same_length_is_refused(small_bible, tmp_path, monkeypatch):
    cfg, run = _interrupted(small_bible, tmp_path, monkeypatch, after_steps=5)
    metrics = run / "metrics.jsonl"
    text = metrics.read_text()
    edited = text.replace('"loss": 6', '"loss": 9', 1)  # one digit of a train loss the checkpoint has seen
    assert edited != text
    metrics.write_text(edited)
    _refused_untouched(cfg, run, r"metrics\.jsonl differs from the log the checkpoint has seen.*start_over")


def test_garbage_in_metrics_is_refused_naming_the_line(small_bible, tmp_path, monkeypatch):
    cfg, run = _interrupted(small_bible, tmp_path, monkeypatch, after_steps=5)
    metrics = run / "metrics.jsonl"
    data = bytearray(metrics.read_bytes())
    data[10:30] = bytes(range(200, 220))  # binary garbage inside the first record
    metrics.write_bytes(bytes(data))
    _refused_untouched(cfg, run, r"metrics\.jsonl: line 1 is not a metrics record")


def test_records_written_after_the_checkpoint_and_a_torn_line_are_cut(small_bible, tmp_path, monkeypatch, reference):
    cfg, run = _interrupted(small_bible, tmp_path, monkeypatch, after_steps=5)
    with open(run / "metrics.jsonl", "ab") as handle:
        handle.write(b'{"event": "train", "step": 6, "lo')  # a kill in the middle of an append
    _train(cfg)
    assert _records(run) == reference


def test_a_deleted_checkpoint_starts_over_cleanly(small_bible, tmp_path, monkeypatch, reference):
    """The old advice (delete checkpoint/) used to append a second log to the first and fail at the end."""
    import shutil

    cfg, run = _interrupted(small_bible, tmp_path, monkeypatch, after_steps=5)
    earlier = (run / "metrics.jsonl").read_bytes()
    shutil.rmtree(run / "checkpoint")
    assert _train(cfg)["status"] == "completed"
    assert _records(run) == reference
    kept = list(run.glob("metrics.jsonl.discarded-*"))
    assert len(kept) == 1 and kept[0].read_bytes() == earlier


def test_resume_from_a_checkpoint_of_a_tasks_last_step_logs_the_true_lr(small_bible, tmp_path, monkeypatch, reference):
    """checkpoint_every=3: the checkpoint of step 3 is task 0's last step, before its boundary evaluation."""
    import signal

    cfg = _config(small_bible, tmp_path, checkpoint_every=3)
    original, calls = Trainer.train_step, {"n": 0}

    def stop_on_the_last_step(self, task):  # SIGTERM's effect at step 3: checkpoint, stop
        out = original(self, task)
        calls["n"] += 1
        if calls["n"] == 3:
            self._stop_signal = signal.SIGTERM
        return out

    monkeypatch.setattr(Trainer, "train_step", stop_on_the_last_step)
    from mer.training.trainer import TrainingStopped

    with pytest.raises(TrainingStopped):
        _train(cfg)
    monkeypatch.setattr(Trainer, "train_step", original)
    _train(cfg)
    boundary = [r for r in _records(tmp_path / "run") if r["event"] == "eval" and r["boundary"]][0]
    assert boundary["lr"] > 0 and boundary == [r for r in reference if r["event"] == "eval" and r["boundary"]][0]


def test_exporting_from_a_damaged_checkpoint_is_refused(reference_run, tmp_path):
    import shutil

    from mer.hf.export import ExportError, export_run

    run = tmp_path / "run"
    shutil.copytree(reference_run, run)
    state = run / "checkpoint" / "state.pt"
    data = bytearray(state.read_bytes())
    data[len(data) // 2] ^= 0x04
    state.write_bytes(bytes(data))
    with pytest.raises(ExportError, match=r"state\.pt is damaged"):
        export_run(run, tmp_path / "out", None, "float32")
    assert not (tmp_path / "out").exists()


def test_a_missing_shard_of_a_sharded_checkpoint_is_refused(tmp_path):
    """The manifest covers every file of the checkpoint, FSDP's sharded/ folder included."""
    from mer.rundir.checkpoint_integrity import verify_checkpoint, write_manifest

    ckpt = tmp_path / "run" / "checkpoint"
    (ckpt / "sharded").mkdir(parents=True)
    (ckpt / "state.pt").write_bytes(b"state" * 100)
    for rank in range(2):
        (ckpt / "sharded" / f"__{rank}_0.distcp").write_bytes(bytes([rank]) * 4096)
    (ckpt / "sharded" / ".metadata").write_bytes(b"meta")
    write_manifest(ckpt, {"bytes": 0, "records": 0, "sha256": "", "last": None}, step=7)
    assert set(verify_checkpoint(ckpt)["files"]) == {"state.pt", "sharded/__0_0.distcp", "sharded/__1_0.distcp",
                                                     "sharded/.metadata"}
    shard = ckpt / "sharded" / "__1_0.distcp"
    shard.write_bytes(bytes([1]) * 4095 + b"\2")
    with pytest.raises(RunDirectoryDamaged, match=r"__1_0\.distcp is damaged"):
        verify_checkpoint(ckpt)
    shard.unlink()
    with pytest.raises(RunDirectoryDamaged, match=r"__1_0\.distcp is missing: the checkpoint of step 7 lists it"):
        verify_checkpoint(ckpt)


def test_an_older_checkpoint_is_cut_only_at_a_line_end(tmp_path):
    """A checkpoint of an older mer stored the log's length alone: the cut must fall after a complete record."""
    from mer.rundir.layout import MetricsLog

    log = MetricsLog(tmp_path / "metrics.jsonl")
    for step in range(3):
        log.append({"event": "train", "step": step})
    lengths = [len(line) for line in log.path.read_bytes().splitlines(keepends=True)]
    with pytest.raises(RunDirectoryDamaged, match="do not end at a record boundary"):
        MetricsLog(log.path).truncate(lengths[0] + 5)
    MetricsLog(log.path).truncate(lengths[0] + lengths[1])
    assert [r["step"] for r in MetricsLog(log.path).records()] == [0, 1]


def test_a_damaged_log_at_the_end_of_a_run_names_the_file_and_line(tmp_path):
    from mer.rundir.layout import MetricsLog

    log = MetricsLog(tmp_path / "metrics.jsonl")
    log.append({"event": "train", "step": 1})
    with open(log.path, "ab") as handle:
        handle.write(b"\0" * 40 + b"\n")
    with pytest.raises(RunDirectoryDamaged, match=r"metrics\.jsonl: line 2 is not a metrics record"):
        log.records()


@pytest.mark.slow
def test_the_run_command_refuses_a_damaged_checkpoint_in_one_line_and_the_fix_works(small_bible, tmp_path):
    """As a user meets it: SIGTERM, bits flipped in state.pt, `python -m mer.run` exits 2 with one line naming the
    file and `python -m mer.start_over`; that command, then the same training command, completes the run."""
    import os
    import shutil
    import signal
    import time

    cfg = small_bible[0]
    data_dir = tmp_path / "data"
    shutil.copytree(cfg.data_dir, data_dir)
    tasks = ",".join(f"{{name:{t.name},max_train_documents:{t.max_train_documents}}}" for t in cfg.tasks[:2])
    args = [sys.executable, "-m", "mer.run", f"data.tasks=[{tasks}]", f"data.data_dir={data_dir}",
            f"runs_dir={tmp_path}/runs",
            f"data.tokenizer.vocab_size={cfg.tokenizer.vocab_size}", "run_name=r", "threads=1", "peak_flops=1e12",
            f"data.tokenizer.train_chars_per_task={cfg.tokenizer.train_chars_per_task}", "model=cpu-0.5m",
            "model.seq_len=32", "optim.batch_size=8", "data.budget_tokens=12000", "data.eval_tokens=65",
            "eval.every=1000", "checkpoint_every=3", "log_every=1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = tmp_path / "runs" / "r"
    proc = subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while time.time() < deadline and not ((run / "checkpoint" / "manifest.json").is_file()
                                          and (run / "metrics.jsonl").read_text().count('"train"') >= 5):
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 143, err[-2000:]
    state = run / "checkpoint" / "state.pt"
    data = bytearray(state.read_bytes())
    data[len(data) // 2] ^= 0x01
    state.write_bytes(bytes(data))
    refused = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    output = refused.stdout + refused.stderr
    assert refused.returncode == 2, output[-2000:]
    assert "Traceback" not in output
    line = next(line for line in output.splitlines() if "state.pt is damaged" in line)
    assert str(state) in line and "python -m mer.start_over" in line
    _run_the_fix(line)
    done = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, (done.stdout + done.stderr)[-2000:]
    assert json.loads((run / "summary.json").read_text())["status"] == "completed"
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines() if '"train"' in line]
    assert steps == sorted(steps) and len(steps) == len(set(steps)) and steps[0] == 1


def test_start_over_refuses_a_folder_that_is_not_a_run(tmp_path):
    from mer.rundir.start_over import main

    (tmp_path / "notes.txt").write_text("keep me")
    assert main([str(tmp_path)]) == 2
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]
