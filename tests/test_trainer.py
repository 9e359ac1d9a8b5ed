"""The trainer on real (small) data: mixing, Reptile, resume, skip, NaN, bad input, run directory."""

from __future__ import annotations

import json
import signal

import pytest
from mer_testing import tiny_run_config

from mer.config.run_config import RunConfig
from mer.data.corpus import DataError
from mer.evaluation.windows import fingerprint_id
from mer.launch.runner import RunConfigMismatch, run_training
from mer.training.trainer import Trainer, TrainingStopped


def _resolved(cfg: RunConfig) -> dict:
    import dataclasses

    return json.loads(json.dumps(dataclasses.asdict(cfg), default=str))


def _train(cfg: RunConfig, name: str = "run") -> dict:
    return run_training(cfg, name, _resolved(cfg))


def _records(cfg: RunConfig, name: str = "run", event: str | None = None) -> list[dict]:
    from pathlib import Path

    lines = (Path(cfg.runs_dir) / name / "metrics.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    return [r for r in records if event is None or r["event"] == event]


def test_run_directory_contract(small_bible, tmp_path):
    cfg = tiny_run_config(small_bible[0], tmp_path)
    summary = _train(cfg)
    run = tmp_path / "run"
    assert {p.name for p in run.iterdir()} >= {"config.yaml", "config.json", "metrics.jsonl", "summary.json", "checkpoint"}
    assert summary["status"] == "completed" and json.loads((run / "summary.json").read_text()) == summary
    evals = _records(cfg, event="eval")
    # One eval at step 0, one every eval.every steps inside tasks, one per task boundary.
    assert [e["boundary"] for e in evals].count(True) == 5
    assert evals[0]["step"] == 0 and set(evals[0]["val_loss"]) == {"en", "fr", "de", "ar", "ja"}
    for record in _records(cfg):
        for key in ("step", "task", "task_index", "tokens_new", "tokens_replay", "flops_new", "flops_replay",
                    "flops_eval", "flops_reptile", "flops_train", "lr"):
            assert key in record
    assert len(summary["loss_matrix"]) == 5 and summary["n_params"] > summary["n_params_nonembedding"] > 0
    assert summary["totals"]["flops_train"] == summary["totals"]["flops_new"] + summary["totals"]["flops_replay"]
    # Evaluated on the first 129 validation tokens of each task through 32-token windows, and said so.
    fingerprint = summary["eval_fingerprint"]
    assert (fingerprint["context"], fingerprint["stride"]) == (32, 32)
    assert fingerprint["tokenizer_hash"] == summary["tokenizer_hash"] and list(fingerprint["tasks"]) == summary["tasks"]
    assert all(t["split"] == "val" and t["start"] == 0 and t["n_tokens"] == 129 for t in fingerprint["tasks"].values())
    assert summary["eval_fingerprint_id"] == fingerprint_id(fingerprint)


def test_replay_mixing_proportions(small_bible, tmp_path):
    cfg = tiny_run_config(small_bible[0], tmp_path, alpha=0.5)
    summary = _train(cfg)
    totals, seq_len, steps = summary["totals"], cfg.model.seq_len, summary["totals"]["steps"]
    # 4 new + 4 replayed blocks per step, except the very first step (empty buffer: all 8 new).
    assert totals["tokens_replay"] == (steps - 1) * 4 * seq_len
    assert totals["tokens_new"] == (steps - 1) * 4 * seq_len + 8 * seq_len
    assert totals["flops_replay"] / totals["tokens_replay"] == totals["flops_new"] / totals["tokens_new"]


def test_eps_one_is_bit_identical_to_reptile_off(small_bible, tmp_path):
    off = _train(tiny_run_config(small_bible[0], tmp_path / "off", k=0), "r")
    noop = _train(tiny_run_config(small_bible[0], tmp_path / "noop", k=3, eps=1.0), "r")
    on = _train(tiny_run_config(small_bible[0], tmp_path / "on", k=3, eps=0.5), "r")
    assert noop["loss_matrix"] == off["loss_matrix"]
    assert on["loss_matrix"] != off["loss_matrix"]
    assert on["totals"]["flops_reptile"] > 0 == off["totals"]["flops_reptile"]


def test_interrupted_and_resumed_run_is_bit_identical(small_bible, tmp_path, monkeypatch):
    reference = tiny_run_config(small_bible[0], tmp_path / "ref", k=3, eps=0.5, alpha=0.5)
    expected = _train(reference)
    cfg = tiny_run_config(small_bible[0], tmp_path / "cut", k=3, eps=0.5, alpha=0.5)
    original = Trainer.train_step
    calls = {"n": 0}

    def stop_after_seven(self, task):  # deliver SIGTERM's effect mid-task, exactly as the handler would
        out = original(self, task)
        calls["n"] += 1
        if calls["n"] == 7:
            self._stop_signal = signal.SIGTERM
        return out

    monkeypatch.setattr(Trainer, "train_step", stop_after_seven)
    with pytest.raises(TrainingStopped, match="signal"):
        _train(cfg)
    assert json.loads((tmp_path / "cut" / "run" / "summary.json").read_text())["status"] == "stopped"
    monkeypatch.setattr(Trainer, "train_step", original)
    resumed = _train(cfg)
    assert resumed["loss_matrix"] == expected["loss_matrix"]
    strip = lambda rs: [{k: v for k, v in r.items() if k not in ("wall_time", "tokens_per_s", "data_wait_s", "mfu")} for r in rs]
    assert strip(_records(cfg)) == strip(_records(reference))


def test_completed_run_is_skipped(small_bible, tmp_path):
    cfg = tiny_run_config(small_bible[0], tmp_path)
    first = _train(cfg)
    stamp = (tmp_path / "run" / "metrics.jsonl").stat().st_mtime_ns
    assert _train(cfg) == first
    assert (tmp_path / "run" / "metrics.jsonl").stat().st_mtime_ns == stamp


def test_run_directory_with_a_different_config_is_refused(small_bible, tmp_path):
    _train(tiny_run_config(small_bible[0], tmp_path, alpha=0.25, budget_tokens=512))
    with pytest.raises(RunConfigMismatch, match=r"holds a run with a different config \(alpha: 0.25 -> 0.5\)"):
        _train(tiny_run_config(small_bible[0], tmp_path, alpha=0.5, budget_tokens=512))
    # Where the run lives or how often it logs does not make it a different run.
    _train(tiny_run_config(small_bible[0], tmp_path, alpha=0.25, budget_tokens=512, log_every=3))


def test_budget_larger_than_the_data_is_refused_before_training(small_bible, tmp_path):
    cfg = tiny_run_config(small_bible[0], tmp_path, budget_tokens=10**9)
    with pytest.raises(DataError, match="task 'en': the budget needs .* data.allow_repeat=true"):
        _train(cfg)
    assert not (tmp_path / "run").exists()


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(small_bible, tmp_path, monkeypatch):
    import torch

    cfg = tiny_run_config(small_bible[0], tmp_path)
    original = Trainer.train_step
    calls = {"n": 0}

    def poison_after_twelve(self, task):
        calls["n"] += 1
        if calls["n"] == 12:  # first step of task 2, after the boundary checkpoint at step 11
            with torch.no_grad():
                self.model.get_input_embeddings().weight.fill_(float("nan"))
        return original(self, task)

    monkeypatch.setattr(Trainer, "train_step", poison_after_twelve)
    with pytest.raises(TrainingStopped, match="the loss is nan at step 12"):
        _train(cfg)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "failed" and "nan" in summary["error"]
    state = torch.load(tmp_path / "run" / "checkpoint" / "state.pt", weights_only=True)
    assert state["position"]["step"] == 11  # 2048 tokens / (6 new blocks x 32 tokens) = 11 steps a task
    assert all(torch.isfinite(t).all() for t in state["model"].values())


def test_resuming_with_shards_from_another_tokenizer_is_refused(small_bible, tmp_path):
    cfg = tiny_run_config(small_bible[0], tmp_path, budget_tokens=512)
    _train(cfg)
    summary_path = tmp_path / "run" / "summary.json"
    summary = json.loads(summary_path.read_text())
    summary.update(status="running", tokenizer_hash="0123456789abcdef")  # as if the data changed mid-run
    summary_path.write_text(json.dumps(summary))
    with pytest.raises(DataError, match="trained with tokenizer 0123456789abcdef .* the shards changed"):
        _train(cfg)


def test_copied_and_referenced_replay_train_identically(small_bible, tmp_path):
    from mer.replay.buffer import BufferConfig

    referenced = _train(tiny_run_config(small_bible[0], tmp_path / "ref", alpha=0.5, buffer=BufferConfig()))
    copied = _train(tiny_run_config(small_bible[0], tmp_path / "copy", alpha=0.5,
                                    buffer=BufferConfig(storage="copy")))
    assert copied["loss_matrix"] == referenced["loss_matrix"]
    assert (tmp_path / "copy" / "run" / "buffer").is_dir()


def test_the_step_never_reads_its_own_loss_on_the_host(small_bible, tmp_path, monkeypatch):
    """No host wait in the step (#22): reading a loss computed on a GPU makes the host wait for the whole step, so
    a step reads one loss, the previous step's (for the NaN/inf check), and never its own; fit() reads the current
    one only where something is written (a log line, an evaluation, a checkpoint). Counted on CPU by the values
    that any tensor read returns while each step runs."""
    import torch

    from mer.data.stream import TaskSequence

    data_cfg, prepared = small_bible
    cfg = tiny_run_config(data_cfg, tmp_path)
    sequence = TaskSequence(prepared.shards[:2], cfg.model.seq_len, cfg.n_new_per_step, cfg.seed, [2048, 2048])
    (tmp_path / "run").mkdir()
    trainer = Trainer(cfg, sequence, len(prepared.tokenizer), tmp_path / "run")
    reads: dict[int, list[float]] = {}
    step = {"now": 0}
    for name in ("item", "tolist", "__float__"):
        original = getattr(torch.Tensor, name)

        def counting(self, *args, _original=original, **kwargs):
            value = _original(self, *args, **kwargs)
            flat = value if isinstance(value, list) else [value]
            reads.setdefault(step["now"], []).extend(v for v in flat if isinstance(v, float))
            return value

        monkeypatch.setattr(torch.Tensor, name, counting)
    losses = []
    for now in range(1, 7):
        step["now"] = now
        loss, _, _ = trainer.train_step(sequence.tasks[0])
        trainer.position.step += 1
        losses.append(loss)
    step["now"] = 0
    monkeypatch.undo()
    values = [float(loss) for loss in losses]
    assert len(set(values)) == len(values)  # distinct, so a read value names its step
    for now, value in enumerate(values, start=1):
        assert value not in reads.get(now, []), f"step {now} read its own loss on the host"
        if now > 1:
            assert reads[now].count(values[now - 2]) == 1, f"step {now} did not check step {now - 1}'s loss"
    assert trainer.read_loss() == values[-1] and trainer.read_loss() is None  # read once, where fit() needs it
