"""Hugging Face out: per-task models kept during training, `python -m mer.export`, and what transformers loads."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]


def _export(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mer.export", *args], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": str(REPO)})


def _trainers_model(run_dir: Path, cfg, vocab_size: int) -> torch.nn.Module:
    """The model the trainer holds at the end of the run: built as it builds it, weights from its checkpoint."""
    from mer.model.llama import build_model

    model = build_model(cfg.model, vocab_size)
    model.load_state_dict(torch.load(run_dir / "checkpoint" / "state.pt", weights_only=True)["model"])
    return model.eval()


def test_export_each_task_keeps_one_model_per_task_boundary(exported_run):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    run_dir, cfg, summary = exported_run
    tasks = summary["tasks"]
    assert summary["exported_models"] == {t: f"models/after_{t}" for t in tasks}
    assert sorted(p.name for p in (run_dir / "models").iterdir()) == sorted(f"after_{t}" for t in tasks)  # no leftovers
    first, last = run_dir / "models" / f"after_{tasks[0]}", run_dir / "models" / f"after_{tasks[-1]}"
    assert {"config.json", "model.safetensors", "tokenizer.json", "README.md"} <= {p.name for p in first.iterdir()}
    after_first = AutoModelForCausalLM.from_pretrained(str(first))
    after_last = AutoModelForCausalLM.from_pretrained(str(last))
    trainer = _trainers_model(run_dir, cfg, after_last.config.vocab_size)
    for name, tensor in trainer.state_dict().items():  # the last boundary's model is the final model
        assert torch.equal(after_last.state_dict()[name], tensor), name
    assert not torch.equal(after_first.model.embed_tokens.weight, after_last.model.embed_tokens.weight)
    assert AutoTokenizer.from_pretrained(str(first)).eos_token == "<|endoftext|>"
    card = (first / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: transformers") and f"end of task `{tasks[0]}` (1 of 5)" in card
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    boundary = next(r for r in records if r["event"] == "eval" and r["boundary"])  # the end of the first task
    assert "Held-out loss" in card
    assert "| " + " | ".join(f"{boundary['val_loss'][t]:.4f}" for t in tasks) + " |" in card


def test_the_exported_model_gives_the_trainers_logits(exported_run, small_bible, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    run_dir, cfg, _ = exported_run
    result = _export(str(run_dir), "--out", str(tmp_path / "final"))
    assert result.returncode == 0, result.stderr
    model = AutoModelForCausalLM.from_pretrained(str(tmp_path / "final")).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(tmp_path / "final"))
    text = "In the beginning God created the heaven and the earth."
    assert tokenizer(text)["input_ids"] == small_bible[1].tokenizer(text)["input_ids"]
    ids = torch.tensor([tokenizer(text)["input_ids"][:32]])
    trainer = _trainers_model(run_dir, cfg, model.config.vocab_size)
    with torch.no_grad():
        assert torch.equal(model(ids).logits, trainer(input_ids=ids).logits)
    assert model.config.use_cache and model.config.eos_token_id == tokenizer.eos_token_id
    card = (tmp_path / "final" / "README.md").read_text()
    assert "the final model of the run" in card and "retained_loss" in card


def test_export_after_a_task_and_in_bfloat16(exported_run, tmp_path):
    from transformers import AutoModelForCausalLM

    run_dir, _, summary = exported_run
    first = summary["tasks"][0]
    result = _export(str(run_dir), "--out", str(tmp_path / "first"), "--after-task", first, "--dtype", "bfloat16")
    assert result.returncode == 0, result.stderr
    model = AutoModelForCausalLM.from_pretrained(str(tmp_path / "first"), dtype="auto")
    kept = AutoModelForCausalLM.from_pretrained(str(run_dir / "models" / f"after_{first}"))
    assert model.dtype == torch.bfloat16
    assert torch.equal(model.lm_head.weight, kept.lm_head.weight.to(torch.bfloat16))


def test_exports_that_cannot_be_made_say_why(exported_run, small_bible, tmp_path):
    run_dir, _, _ = exported_run
    unknown = _export(str(run_dir), "--out", str(tmp_path / "x"), "--after-task", "xx")
    assert unknown.returncode == 2 and "the run's tasks are ['en', 'fr', 'de', 'ar', 'ja']" in unknown.stderr
    (tmp_path / "empty").mkdir()
    nothing = _export(str(tmp_path / "empty"), "--out", str(tmp_path / "y"))
    assert nothing.returncode == 2 and "is not a run directory" in nothing.stderr
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()
