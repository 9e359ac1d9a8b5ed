"""The vocabulary and held-out span sizes a plan needs, read without preparing any data (docs/plan.md).

Preparing a corpus (training a tokenizer, tokenizing every task) can take hours on a large corpus, so a plan
never does it. It looks in the data cache instead: the shard manifests of a prepared sequence are found
exactly where `mer.data.pipeline.prepare_data` would put them (tokenizer hash and corpus fingerprints are
cheap to compute), and give the tokenizer's size and each validation split's length. Where the data is not
prepared yet, the vocabulary is the configured one (`data.tokenizer.vocab_size`, the tokenizer at
`data.tokenizer.path`, or `model.init_from`'s embedding rows) and the held-out span is `data.eval_tokens`;
with neither, the plan says that its evaluation cost is unknown.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from mer.config.run_config import RunConfig


@dataclass(frozen=True)
class DataSizes:
    vocab_size: int
    """Rows of the output projection: the tokenizer's size (a loaded model's embedding rows)."""
    held_out_tokens: dict[str, int] | None
    """Tokens of each task's held-out span; None when unknown (data not prepared, data.eval_tokens null)."""
    source: str
    """Where the numbers come from, for the plan's text."""


def _prepared_manifests(cfg: RunConfig) -> list[dict] | None:
    """The shard manifests of every task when the sequence is prepared in the cache, else None."""
    from mer.data.corpus import DataError
    from mer.data.pipeline import build_corpus
    from mer.data.shards import shard_directory
    from mer.data.tokenizer import tokenizer_hash

    data = cfg.data
    if any(t.source == "tokens" for t in data.tasks):
        return None
    data_dir = Path(data.data_dir).expanduser()
    try:
        corpora = [build_corpus(task, data_dir) for task in data.tasks]
        digest = tokenizer_hash(corpora, data.tokenizer)
    except (DataError, OSError, ImportError):
        return None  # the preparation will say what is wrong with the sources; a plan only lacks the sizes
    manifests = []
    for corpus in corpora:
        path = shard_directory(data_dir, digest, corpus) / "manifest.json"
        try:
            manifests.append(json.loads(path.read_text()))
        except (OSError, json.JSONDecodeError):
            return None
    return manifests


def configured_vocab_size(cfg: RunConfig) -> int:
    """The vocabulary without prepared data: a loaded model's rows, a given tokenizer's size, or the BPE's."""
    if cfg.model.init_from is not None:
        config = json.loads((Path(cfg.model.init_from).expanduser() / "config.json").read_text())
        return int(config["vocab_size"])
    if cfg.data.tokenizer.path is not None:
        from transformers import AutoTokenizer

        return len(AutoTokenizer.from_pretrained(str(Path(cfg.data.tokenizer.path).expanduser()),
                                                 local_files_only=True))
    return cfg.data.tokenizer.vocab_size


def data_sizes(cfg: RunConfig) -> DataSizes:
    """Vocabulary and held-out spans of `cfg`'s run (module docstring)."""
    manifests = _prepared_manifests(cfg)
    names = [t.name for t in cfg.data.tasks]
    if manifests is not None:
        vocab = (configured_vocab_size(cfg) if cfg.model.init_from is not None
                 else int(manifests[0]["vocab_size"]))
        val = {name: int(m["splits"]["val"]["tokens"]) for name, m in zip(names, manifests, strict=True)}
        if cfg.data.eval_tokens is not None:
            val = {name: min(n, cfg.data.eval_tokens) for name, n in val.items()}
        return DataSizes(vocab, val, "the prepared data in the cache")
    vocab = configured_vocab_size(cfg)
    if cfg.data.eval_tokens is not None:
        return DataSizes(vocab, {name: cfg.data.eval_tokens for name in names},
                         "the config (data not prepared yet; held-out span from data.eval_tokens)")
    return DataSizes(vocab, None, "the config (data not prepared yet, data.eval_tokens null: held-out spans unknown)")
