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

    from mer.config.run_config import EvalConfig, RunConfig
    from mer.model.llama import get_preset
    from mer.optim.schedule import OptimConfig
    from mer.replay.buffer import BufferConfig

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


def save_tiny_llama(folder: Path, tokenizer_dir: Path | None, vocab_size: int | None = None, dtype=None,
                    architecture: str = "llama", seed: int = 0, **shape) -> Path:
    """A small randomly initialised Hugging Face causal LM saved with save_pretrained (safetensors) to `folder`,
    with the tokenizer files of `tokenizer_dir` copied beside it byte for byte (None: no tokenizer). Its shape
    (3 layers of width 64, 96 positions) differs from every preset, so a run that follows it is visibly the
    loaded architecture; `vocab_size` defaults to the tokenizer's size."""
    import shutil

    import torch
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

    if vocab_size is None:
        vocab_size = len(AutoTokenizer.from_pretrained(str(tokenizer_dir), local_files_only=True))
    torch.manual_seed(seed)
    if architecture == "gpt2":
        model = GPT2LMHeadModel(GPT2Config(vocab_size=vocab_size, n_embd=32, n_layer=2, n_head=2, n_positions=96))
    else:
        import transformers

        dims = dict(hidden_size=64, intermediate_size=160, num_hidden_layers=3, num_attention_heads=4,
                    num_key_value_heads=2, max_position_embeddings=96, tie_word_embeddings=False)
        dims.update(shape)
        prefix = {"llama": "Llama", "mistral": "Mistral", "qwen2": "Qwen2", "qwen3": "Qwen3"}[architecture]
        config = getattr(transformers, f"{prefix}Config")(vocab_size=vocab_size, **dims)
        model = getattr(transformers, f"{prefix}ForCausalLM")(config)
    if dtype is not None:
        model = model.to(dtype)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(folder), safe_serialization=True)
    if tokenizer_dir is not None:
        for path in Path(tokenizer_dir).iterdir():
            if path.is_file():
                shutil.copy(path, folder / path.name)
    return folder


def small_bible_cli_overrides(data_dir: Path, documents: int = 60, vocab_size: int = 512) -> list[str]:
    """`python -m mer.run` overrides that select `small_bible_config`'s data (its prepared cache is reused) and the
    tiny model and budgets of `tiny_run_config`: a run in seconds, from the command line."""
    tasks = ",".join(f"{{name:{lang},max_train_documents:{documents}}}" for lang in LANGUAGES)
    return [f"data.tasks=[{tasks}]", f"data.data_dir={data_dir}", f"data.tokenizer.vocab_size={vocab_size}",
            "data.tokenizer.train_chars_per_task=60000", "model=cpu-0.5m", "model.seq_len=32", "optim.batch_size=8",
            "optim.lr=3e-3", "optim.min_lr=3e-4", "data.budget_tokens=2048", "data.eval_tokens=129", "eval.every=8",
            "eval.batch_size=4", "checkpoint_every=5", "log_every=2", "device=cpu", "threads=1"]


def word_tokenizer(directory: Path, vocab: int) -> Path:
    """A word-level tokenizer of exactly `vocab` tokens saved with save_pretrained: "<i>" is token i, the last one is
    the end of text (and the unknown word); words split at whitespace and decoded joined by one space.
    Any vocabulary, built here (never from a hub): pre-tokenized tasks and tokenizers over 65,535 tokens."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    if (directory / "tokenizer.json").is_file():
        return directory
    words = {f"<{i}>": i for i in range(vocab - 1)}
    words["<|endoftext|>"] = vocab - 1
    tokenizer = Tokenizer(models.WordLevel(words, unk_token="<|endoftext|>"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token="<|endoftext|>",
                            unk_token="<|endoftext|>").save_pretrained(str(directory))
    return directory
