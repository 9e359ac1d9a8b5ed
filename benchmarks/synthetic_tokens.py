"""Synthetic pre-tokenized tasks at any vocabulary, written to real files and prepared the real way.

Throughput benchmarks at paper scale need the paper's vocabulary (50304: the output projection is
about 10% of the 560m model's FLOPs and more of the 99m's), which the built-in Bible tokenizer (4096)
does not have. So this module writes, under one directory:

* `tokenizer-<vocab>/`: a word-level tokenizer with exactly `vocab` entries (the last one is the
  end-of-text token), saved with `save_pretrained` so `AutoTokenizer` loads it as it loads any user's;
* `tokens-<vocab>/<task>-{train,val}.bin`: uniform random token ids, flat uint16/uint32 arrays
  (the "pre-tokenized files" layout of `mer.data.shards.register_token_files`);

and returns the `DataConfig` of the `tokens` source that points at them, which `prepare_data`
turns into shards with manifests like any pre-tokenized data set. Uniform tokens train to nothing,
but every step costs what a step on text costs. Files already there with the right size are reused.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mer.data.config import DataConfig, TaskConfig, TokenizerConfig
from mer.data.shards import token_dtype

EOS = "<|endoftext|>"
CHUNK_TOKENS = 1 << 24  # random tokens generated per write (32 MB at uint16): bounded memory at any size


def write_tokenizer(directory: Path, vocab: int) -> Path:
    """A word-level tokenizer of exactly `vocab` tokens (ids 0..vocab-2 are "<i>", vocab-1 is EOS)."""
    if (directory / "tokenizer.json").is_file():
        return directory
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    words = {f"<{i}>": i for i in range(vocab - 1)}
    words[EOS] = vocab - 1
    tokenizer = Tokenizer(models.WordLevel(words, unk_token=EOS))
    wrapped = PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token=EOS, unk_token=EOS)
    staging = directory.with_name(directory.name + ".partial")
    wrapped.save_pretrained(str(staging))
    staging.rename(directory)  # complete or absent, so a killed run never leaves half a tokenizer
    return directory


def write_tokens(path: Path, n_tokens: int, vocab: int, seed: list[int]) -> None:
    """`n_tokens` uniform random ids in [0, vocab) as a flat array (skipped if the file has the right size)."""
    dtype = token_dtype(vocab)
    if path.is_file() and path.stat().st_size == n_tokens * dtype.itemsize:
        return
    rng = np.random.default_rng(seed)
    partial = path.with_name(path.name + ".partial")
    with open(partial, "wb") as handle:
        for start in range(0, n_tokens, CHUNK_TOKENS):
            rng.integers(0, vocab, size=min(CHUNK_TOKENS, n_tokens - start), dtype=dtype).tofile(handle)
    partial.rename(path)


def synthetic_data_config(root: Path, vocab: int, n_tasks: int, train_tokens: int, val_tokens: int,
                          seed: int = 0) -> DataConfig:
    """Write (or reuse) `n_tasks` random tasks under `root` and return their `DataConfig`.

    The budget is in steps and repeats are allowed: a benchmark runs as many steps as it likes over
    files of a bounded size (3 tasks of 16M tokens at vocab 50304 are 96 MB).
    """
    root.mkdir(parents=True, exist_ok=True)
    tokenizer_dir = write_tokenizer(root / f"tokenizer-{vocab}", vocab)
    token_dir = root / f"tokens-{vocab}"
    token_dir.mkdir(exist_ok=True)
    tasks = []
    for i in range(n_tasks):
        name = f"task{i + 1}"
        train, val = token_dir / f"{name}-train.bin", token_dir / f"{name}-val.bin"
        write_tokens(train, train_tokens, vocab, seed=[seed, i, 0])
        write_tokens(val, val_tokens, vocab, seed=[seed, i, 1])
        tasks.append(TaskConfig(name=name, language="und", source="tokens", train_files=[str(train)],
                                val_files=[str(val)]))
    return DataConfig(tasks=tasks, data_dir=str(root / "cache"), tokenizer=TokenizerConfig(path=str(tokenizer_dir)),
                      budget_tokens=None, budget_steps=1_000_000, allow_repeat=True,
                      min_val_tokens=min(val_tokens, DataConfig.min_val_tokens))  # the caller sizes its own span
