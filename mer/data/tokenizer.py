"""The tokenizer: a byte-level BPE trained on every task's text, or the user's own tokenizer directory.

The trained tokenizer is cached under `<data_dir>/tokenizers/<hash>/` where the hash covers every
task's content fingerprint and the training settings, so the same data always maps to the same
tokenizer and changed data never reuses a stale one. It is saved with `save_pretrained`, so
`transformers.AutoTokenizer.from_pretrained(dir)` loads it like any Hugging Face tokenizer.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path

from mer.data.atomic import atomic_directory
from mer.data.config import TokenizerConfig
from mer.data.corpus import DataError, TaskCorpus
from mer.data.tokenizer_check import check_user_tokenizer, record_tokenizer_files, verify_cached_tokenizer
from mer.files.hashing import tokenizer_files_hash

log = logging.getLogger(__name__)

EOS_TOKEN = "<|endoftext|>"
TOKENIZER_FORMAT = 1  # bump when the training recipe changes, so old caches are not reused


def _training_text(corpora: Sequence[TaskCorpus], chars_per_task: int) -> Iterator[str]:
    # Equal character shares per task: every language of the sequence is in the merges.
    for corpus in corpora:
        taken = 0
        for document in corpus.train_documents():
            yield document[: chars_per_task - taken]
            taken += len(document)
            if taken >= chars_per_task:
                break


def tokenizer_hash(corpora: Sequence[TaskCorpus], cfg: TokenizerConfig) -> str:
    """Content hash naming a trained tokenizer (or the hash of a user tokenizer's files)."""
    if cfg.path is not None:
        return _directory_hash(Path(cfg.path).expanduser())
    key = json.dumps(
        {
            "format": TOKENIZER_FORMAT,
            "vocab_size": cfg.vocab_size,
            "chars_per_task": cfg.train_chars_per_task,
            "min_frequency": cfg.min_frequency,
            "corpora": [c.fingerprint for c in corpora],
        },
        sort_keys=True,
    )
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def _directory_hash(directory: Path) -> str:
    if not directory.is_dir():
        raise DataError(f"data.tokenizer.path={str(directory)!r} is not a directory; give the folder that holds "
                        "tokenizer.json (as written by save_pretrained)")
    return tokenizer_files_hash(directory)


def check_tokenizer_path(cfg: TokenizerConfig) -> None:
    """A user tokenizer (`data.tokenizer.path`) that is not there is refused first, before any corpus is read: a
    400 GB corpus is hashed at its first preparation, and a typo in a path must not cost that."""
    if cfg.path is not None:
        directory = Path(cfg.path).expanduser()
        _directory_hash(directory)
        check_user_tokenizer(directory)


def train_bpe(corpora: Sequence[TaskCorpus], cfg: TokenizerConfig, out_dir: Path) -> None:
    """Train a byte-level BPE on equal shares of every task's text and save it for transformers."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=cfg.vocab_size,
        min_frequency=cfg.min_frequency,
        special_tokens=[EOS_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_training_text(corpora, cfg.train_chars_per_task), trainer=trainer)
    wrapped = PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token=EOS_TOKEN, bos_token=EOS_TOKEN)
    wrapped.save_pretrained(str(out_dir))


def prepare_tokenizer(corpora: Sequence[TaskCorpus], cfg: TokenizerConfig, data_dir: Path):
    """The tokenizer for these corpora: loaded from the cache, trained once, or the user's by path.

    Returns `(tokenizer, hash)` with a `transformers.PreTrainedTokenizerFast`.
    """
    from transformers import AutoTokenizer

    digest = tokenizer_hash(corpora, cfg)
    if cfg.path is not None:
        directory = Path(cfg.path).expanduser()
        check_user_tokenizer(directory)
    else:
        directory = data_dir / "tokenizers" / digest
        with atomic_directory(directory) as staging:
            if staging is not None:
                log.info("training a %d-token byte-level BPE on %d task(s)", cfg.vocab_size, len(corpora))
                train_bpe(corpora, cfg, staging)
                record_tokenizer_files(staging)  # inside the staging folder: published with the files it describes
        verify_cached_tokenizer(directory)
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(directory), local_files_only=True)
    except Exception as error:  # transformers raises OSError/ValueError/... depending on what is missing
        raise DataError(f"cannot load the tokenizer in {directory}: {error}; give a directory written by "
                        "save_pretrained (with tokenizer.json)") from None
    if tokenizer.eos_token_id is None:
        raise DataError(f"the tokenizer in {directory} has no end-of-text token; documents could not be "
                        "separated. Set eos_token in its tokenizer_config.json")
    return tokenizer, digest


def check_coverage(tokenizer, corpus: TaskCorpus, sample_chars: int = 20_000) -> dict[str, float]:
    """Refuse a tokenizer that does not cover a task's language.

    Covered means: text round-trips, almost no unknown tokens, and it compresses the language better
    than raw UTF-8 bytes (a tokenizer that never saw a script falls back to about one token per byte).
    Returns the measured statistics for the manifest.
    """
    sample = ""
    for document in corpus.val_documents():
        sample += document + "\n"
        if len(sample) >= sample_chars:
            break
    sample = sample[:sample_chars]
    if not sample.strip():
        raise DataError(f"task {corpus.name!r}: the validation split is empty ({corpus.description}); "
                        "give val_files or more text")
    ids = tokenizer.encode(sample, add_special_tokens=False, verbose=False)  # a long sample on purpose: no warning
    n_bytes = len(sample.encode("utf-8"))
    unk_id = tokenizer.unk_token_id
    unk_share = (sum(1 for i in ids if i == unk_id) / len(ids)) if unk_id is not None else 0.0
    bytes_per_token = n_bytes / max(len(ids), 1)
    stats = {"bytes_per_token": round(bytes_per_token, 4), "unk_share": round(unk_share, 6)}
    fix = "train a tokenizer on all tasks (data.tokenizer.path=null) or give one that covers this language"
    if unk_share > 0.01:
        raise DataError(f"task {corpus.name!r} ({corpus.language}): {unk_share:.1%} of tokens are unknown; {fix}")
    if bytes_per_token < 1.1:
        raise DataError(f"task {corpus.name!r} ({corpus.language}): the tokenizer does not cover this language "
                        f"({bytes_per_token:.2f} bytes per token, no better than raw bytes); {fix}")
    decoded = tokenizer.decode(ids)
    if unk_id is None and decoded != sample:
        raise DataError(f"task {corpus.name!r}: the tokenizer does not round-trip this language's text; {fix}")
    return stats
