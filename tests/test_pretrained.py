"""Hugging Face in: continue pre-training a saved tiny Llama (`model.init_from`), and every refusal before work."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from mer_testing import save_tiny_llama, tiny_run_config

from mer.compute.flops import estimate_flops
from mer.config.run_config import RunConfig
from mer.launch.runner import run_training
from mer.model.llama import count_parameters, get_preset
from mer.training.trainer import Trainer

REPO = Path(__file__).resolve().parents[1]


def _pretrained_config(small_bible, runs: Path, model_dir: Path, **overrides) -> RunConfig:
    model = dataclasses.replace(get_preset("cpu-0.5m", seq_len=32), init_from=str(model_dir))
    return tiny_run_config(small_bible[0], runs, model=model, **overrides)


def _train(cfg: RunConfig, name: str = "run") -> dict:
    return run_training(cfg, name, json.loads(json.dumps(dataclasses.asdict(cfg), default=str)))


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


@pytest.fixture(scope="module")
def tiny_llama(small_bible, tmp_path_factory) -> Path:
    """A 3-layer Llama stored in bfloat16 with the small Bible tokenizer: any dtype, not the trainer's fp32."""
    return save_tiny_llama(tmp_path_factory.mktemp("tiny") / "tiny-llama", small_bible[1].tokenizer_dir,
                           dtype=torch.bfloat16)


def test_the_config_takes_the_loaded_architecture_and_its_tokenizer(small_bible, tiny_llama, tmp_path):
    cfg = _pretrained_config(small_bible, tmp_path, tiny_llama)
    shape = cfg.model
    assert (shape.n_layer, shape.d_model, shape.n_head, shape.n_kv_head, shape.d_ff) == (3, 64, 4, 2, 160)
    assert shape.name == "tiny-llama" and shape.seq_len == 32  # the preset's name would mislabel the run
    assert cfg.data.tokenizer.path == str(tiny_llama)
    assert small_bible[0].tokenizer.path is None  # the shared data config is not changed behind its back


@pytest.mark.slow
def test_a_run_continues_from_the_loaded_weights_with_their_costs(small_bible, tiny_llama, tmp_path):
    cfg = _pretrained_config(small_bible, tmp_path, tiny_llama)
    prepared = small_bible[1]
    from mer.data.pipeline import prepare_data
    from mer.data.stream import TaskSequence

    data = prepare_data(cfg.data)  # the model's tokenizer: its own hash, its own shards
    assert data.tokenizer_dir == tiny_llama and data.tokenizer_hash != prepared.tokenizer_hash
    sequence = TaskSequence(data.shards, cfg.model.seq_len, cfg.n_new_per_step, cfg.seed, cfg.task_budgets, None,
                            False, cfg.data.eval_tokens, replay_blocks_per_step=cfg.n_replay_per_step)
    (tmp_path / "direct").mkdir()
    trainer = Trainer(cfg, sequence, len(data.tokenizer), tmp_path / "direct")
    saved = _weights(tiny_llama)
    for name, tensor in trainer.model.state_dict().items():  # bf16 on disk, fp32 master weights in training
        assert tensor.dtype == torch.float32 and torch.equal(tensor, saved[name].float()), name
    n_params, n_nonemb = count_parameters(trainer.model)
    assert trainer.rates == estimate_flops(n_params, n_nonemb, 3, 32, 64, 512)

    summary = _train(cfg)
    assert summary["status"] == "completed" and summary["init_from"] == str(tiny_llama)
    assert (summary["n_params"], summary["n_params_nonembedding"]) == (n_params, n_nonemb)
    assert summary["tokenizer_hash"] == data.tokenizer_hash
    first = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[0])
    assert first["event"] == "eval" and first["step"] == 0
    assert summary["loss_matrix"][0][0] < first["val_loss"]["en"] - 0.3  # it learned from where the model was


def test_reptiles_first_anchor_is_the_loaded_weights(small_bible, tiny_llama, tmp_path):
    """One task, Reptile interpolating only at the task's end: theta_end = w0 + eps * (theta - w0), where w0 is
    the anchor taken at the start. A run without Reptile gives theta; the loaded weights must be w0."""
    one_task = dataclasses.replace(small_bible[0], tasks=small_bible[0].tasks[:1])
    plain = _pretrained_config((one_task,), tmp_path / "plain", tiny_llama)
    reptile = _pretrained_config((one_task,), tmp_path / "reptile", tiny_llama, k=1000, eps=0.25,
                                 reptile_at_task_end=True)
    _train(plain), _train(reptile)
    theta = torch.load(tmp_path / "plain" / "run" / "checkpoint" / "state.pt", weights_only=True)["model"]
    ended = torch.load(tmp_path / "reptile" / "run" / "checkpoint" / "state.pt", weights_only=True)["model"]
    loaded = _weights(tiny_llama)
    for name, w0 in loaded.items():
        w0 = w0.float()
        assert not torch.allclose(theta[name], w0)  # training moved every tensor
        torch.testing.assert_close(ended[name], w0 + 0.25 * (theta[name] - w0), rtol=0, atol=1e-6)


@pytest.mark.slow
def test_a_pretrained_run_resumes_like_any_run(small_bible, tiny_llama, tmp_path, monkeypatch):
    import signal

    from mer.training.trainer import TrainingStopped

    expected = _train(_pretrained_config(small_bible, tmp_path / "ref", tiny_llama))
    cfg = _pretrained_config(small_bible, tmp_path / "cut", tiny_llama)
    original, calls = Trainer.train_step, {"n": 0}

    def stop_after_five(self, task):  # SIGTERM's effect mid-run, as the handler delivers it
        out = original(self, task)
        calls["n"] += 1
        if calls["n"] == 5:
            self._stop_signal = signal.SIGTERM
        return out

    monkeypatch.setattr(Trainer, "train_step", stop_after_five)
    with pytest.raises(TrainingStopped):
        _train(cfg)
    monkeypatch.setattr(Trainer, "train_step", original)
    assert _train(cfg)["loss_matrix"] == expected["loss_matrix"]


@pytest.mark.parametrize("architecture", ["mistral", "qwen2", "qwen3"])
def test_the_other_llama_family_architectures_train_and_evaluate(small_bible, tmp_path, architecture):
    from mer.data.pipeline import prepare_data
    from mer.data.stream import TaskSequence

    folder = save_tiny_llama(tmp_path / architecture, small_bible[1].tokenizer_dir, architecture=architecture)
    cfg = _pretrained_config(small_bible, tmp_path, folder)
    data = prepare_data(cfg.data)
    sequence = TaskSequence(data.shards, cfg.model.seq_len, cfg.n_new_per_step, cfg.seed, cfg.task_budgets, None,
                            False, cfg.data.eval_tokens, replay_blocks_per_step=cfg.n_replay_per_step)
    (tmp_path / "run").mkdir()
    trainer = Trainer(cfg, sequence, len(data.tokenizer), tmp_path / "run")
    assert type(trainer.model).__name__.lower().startswith(architecture)
    before = trainer.evaluate(boundary=False)["en"]
    for _ in range(3):
        loss, _, _ = trainer.train_step(sequence.tasks[0])
        assert loss == loss  # finite: no NaN
    assert trainer.evaluate(boundary=False)["en"] < before


# ---------------------------------------------------------------- refusals, before any work


def test_a_tokenizer_larger_than_the_embeddings_is_refused(small_bible, tmp_path):
    small = save_tiny_llama(tmp_path / "small-vocab", small_bible[1].tokenizer_dir, vocab_size=300)
    with pytest.raises(ValueError, match=r"has 512 tokens but the model .* has 300 embedding rows"):
        _pretrained_config(small_bible, tmp_path, small)


def test_padded_embeddings_are_accepted(small_bible, tmp_path):
    padded = save_tiny_llama(tmp_path / "padded", small_bible[1].tokenizer_dir, vocab_size=576)  # 512 tokens
    assert _pretrained_config(small_bible, tmp_path, padded).data.tokenizer.path == str(padded)


def test_directories_that_are_not_a_model_are_refused(small_bible, tmp_path):
    with pytest.raises(ValueError, match="is not a directory"):
        _pretrained_config(small_bible, tmp_path, tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="is not a model directory: it has no config.json"):
        _pretrained_config(small_bible, tmp_path, tmp_path / "empty")
    with pytest.raises(ValueError, match="is not a model directory: it has no config.json"):
        _pretrained_config(small_bible, tmp_path, small_bible[1].tokenizer_dir)  # a tokenizer's folder
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "config.json").write_text('{"learning_rate": 0.1}')  # another library's config
    with pytest.raises(ValueError, match="is not a model directory: its config.json has no model_type"):
        _pretrained_config(small_bible, tmp_path, tmp_path / "other")
    no_weights = save_tiny_llama(tmp_path / "no-weights", None, vocab_size=512)
    (no_weights / "model.safetensors").unlink()
    with pytest.raises(ValueError, match="has a config.json but no weights"):
        _pretrained_config(small_bible, tmp_path, no_weights)
    no_tokenizer = save_tiny_llama(tmp_path / "no-tokenizer", None, vocab_size=512)
    with pytest.raises(ValueError, match="has no tokenizer"):
        _pretrained_config(small_bible, tmp_path, no_tokenizer)


def test_an_architecture_the_trainer_cannot_train_is_named(small_bible, tmp_path):
    gpt2 = save_tiny_llama(tmp_path / "gpt2", small_bible[1].tokenizer_dir, architecture="gpt2")
    with pytest.raises(ValueError, match="holds a GPT2LMHeadModel .* which this trainer cannot train"):
        _pretrained_config(small_bible, tmp_path, gpt2)


def test_a_block_longer_than_the_models_positions_is_refused(small_bible, tiny_llama, tmp_path):
    with pytest.raises(ValueError, match=r"model.seq_len=128 is longer than the 96 positions"):
        tiny_run_config(small_bible[0], tmp_path,
                        model=dataclasses.replace(get_preset("cpu-2m"), init_from=str(tiny_llama)))


def test_the_command_line_refuses_a_vocabulary_mismatch_before_any_work(small_bible, tmp_path):
    small = save_tiny_llama(tmp_path / "small-vocab", small_bible[1].tokenizer_dir, vocab_size=300)
    result = subprocess.run([sys.executable, "-m", "mer.run", f"model.init_from={small}", "model.seq_len=64",
                             f"runs_dir={tmp_path}/runs",
                             f"data.data_dir={tmp_path}/data"], cwd=tmp_path, capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=300)
    assert result.returncode == 2, result.stderr
    assert "refused:" in result.stderr and "300 embedding rows" in result.stderr
    assert not (tmp_path / "data").exists() and not list((tmp_path / "runs").glob("*/summary.json"))


def test_weights_that_do_not_cover_the_architecture_are_refused_when_loaded(small_bible, tmp_path):
    from safetensors.torch import load_file, save_file

    from mer.model.pretrained import load_pretrained

    folder = save_tiny_llama(tmp_path / "headless", small_bible[1].tokenizer_dir)
    weights = load_file(str(folder / "model.safetensors"))
    del weights["lm_head.weight"]  # untied: the head is a tensor of its own, now missing
    save_file(weights, str(folder / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(ValueError, match=r"the weights lack 1 tensor\(s\) of the architecture \(lm_head.weight"):
        load_pretrained(str(folder), torch.device("cpu"))
