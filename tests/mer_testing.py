"""Helpers shared by test modules (a uniquely named module: several conftest.py files exist)."""

from __future__ import annotations

from pathlib import Path

LANGUAGES = ("en", "fr", "de", "ar", "ja")


def small_bible_config(data_dir: Path, documents: int = 60, vocab_size: int = 512):
    """The default five-language Bible sequence, cut to `documents` chapters per language."""
    from mer.data.config import DataConfig, TaskConfig, TokenizerConfig

    return DataConfig(
        tasks=[TaskConfig(name=lang, max_train_documents=documents) for lang in LANGUAGES],
        data_dir=str(data_dir),
        tokenizer=TokenizerConfig(vocab_size=vocab_size, train_chars_per_task=60_000),
        budget_tokens=20_000,
    )


def tiny_run_config(small_bible_cfg, runs_dir: Path, **overrides):
    """A RunConfig that trains in seconds on the small Bible data: 0.5M-parameter model, 32-token blocks."""
    import dataclasses

    from mer.config import EvalConfig, RunConfig
    from mer.model import get_preset
    from mer.replay import BufferConfig
    from mer.schedule import OptimConfig

    # 129 held-out tokens: 128 targets, 4 evaluation windows of the 32-token context.
    data = dataclasses.replace(small_bible_cfg, budget_tokens=overrides.pop("budget_tokens", 2048), eval_tokens=129)
    fields = dict(
        alpha=0.25, k=0, eps=0.1, seed=0,
        model=get_preset("cpu-0.5m", seq_len=32),
        data=data,
        optim=OptimConfig(lr=3e-3, min_lr=3e-4, batch_size=8),
        eval=EvalConfig(every=8, batch_size=4),
        buffer=BufferConfig(),
        runs_dir=str(runs_dir), checkpoint_every=5, log_every=2, device="cpu",
    )
    fields.update(overrides)
    return RunConfig(**fields)
