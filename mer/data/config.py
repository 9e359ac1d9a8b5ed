"""Typed configs of the data pipeline: the task sequence, its sources and the tokenizer.

Plain dataclasses: Hydra's ConfigStore registers them (in `mer.config.run_config`), YAML files in `conf/data/`
extend them, and everything below sees plain Python objects. Every check runs in `__post_init__`, so
a bad value fails when the config is built, before any text is read.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass, field

from mer.data.sources.debian_packages import SUPPORTED_LANGUAGES, package_spec_problem

SOURCES = ("bible", "files", "debian", "tokens", "hf")


@dataclass
class TaskConfig:
    """One task (one language) of the sequence and where its text comes from."""

    name: str = "en"
    """Task name used in metrics and file names (letters, digits, '-', '_')."""
    language: str | None = None
    """ISO 639-1 code of the text's language; defaults to `name`."""
    source: str = "bible"
    """bible (built-in, from packages) | files (your text/JSONL/Parquet) | debian (Debian docs) | tokens (pre-tokenized)
    | hf (a Hugging Face `datasets` data set on disk)."""
    translation: str | None = None
    """bible: translation code (see mer.data.sources.bible.TRANSLATIONS); null takes the language's default."""
    train_files: list[str] = field(default_factory=list)
    """files: training files, directories or globs. tokens: flat token files, folders (their *.bin) or globs, read
    end to end in sorted order."""
    val_files: list[str] = field(default_factory=list)
    """files: validation files; empty holds out `val_fraction` of documents by hash. tokens: like train_files."""
    val_fraction: float = 0.01
    """files, hf: share of documents held out by hash when no val_files / val_split are given."""
    text_field: str = "text"
    """files: JSONL field / Parquet column holding the text. hf: the data set's text column."""
    dataset: str | None = None
    """hf: a save_to_disk folder, Parquet/Arrow/JSONL data files (a file, folder or glob), or a hub name whose
    snapshot is already in the local Hugging Face cache (never downloaded)."""
    dataset_config: str | None = None
    """hf: the data set's configuration name (e.g. a language of a multilingual hub data set); null: its default."""
    split: str = "train"
    """hf: the split trained on."""
    val_split: str | None = None
    """hf: the split evaluated on; null holds out `val_fraction` of `split`'s documents by hash."""
    text_split: str = "paragraph"
    """files: how a plain-text file is cut into documents: paragraph (blank lines), line or file."""
    encoding: str = "utf-8"
    """files: text encoding."""
    decode_errors: str = "strict"
    """files: strict (stop at undecodable bytes and name the file) or replace."""
    token_dtype: str | None = None
    """tokens: uint16 or uint32; null infers it from the tokenizer's vocabulary size."""
    max_train_documents: int | None = None
    """Use only the first N training documents (quick experiments and tests)."""
    budget_tokens: int | None = None
    """Tokens of NEW data to train on in this task; null takes data.budget_tokens."""
    packages: list[str] = field(default_factory=list)
    """debian: the packages to read, in order, each a package name or "name:path/inside/package/" (only that folder);
    empty takes the language's default list (mer.data.sources.debian_packages.DEFAULT_PACKAGES). Part of the text's
    fingerprint, so data prepared from other packages is never reused."""
    max_packages: int | None = None
    """debian: read only the first N packages of the list (after leaving out those missing from the archive);
    null reads them all."""

    def __post_init__(self) -> None:
        if not self.name or not all(c.isalnum() or c in "-_" for c in self.name):
            raise ValueError(f"data.tasks: task name {self.name!r} must be non-empty letters, digits, '-' or '_'")
        if self.language is None:
            self.language = self.name
        if self.source not in SOURCES:
            raise ValueError(f"data.tasks[{self.name}].source={self.source!r} is unknown; use one of {SOURCES}")
        if not 0.0 < self.val_fraction < 0.5:
            raise ValueError(f"data.tasks[{self.name}].val_fraction={self.val_fraction} must be in (0, 0.5)")
        try:
            codecs.lookup(self.encoding)
        except (LookupError, TypeError):
            raise ValueError(f"data.tasks[{self.name}].encoding={self.encoding!r} is not a text encoding Python knows; "
                             "use e.g. utf-8, latin-1 or cp1252") from None
        if self.decode_errors not in ("strict", "replace"):
            raise ValueError(f"data.tasks[{self.name}].decode_errors={self.decode_errors!r}; use strict or replace")
        if self.token_dtype not in (None, "uint16", "uint32"):
            raise ValueError(f"data.tasks[{self.name}].token_dtype={self.token_dtype!r}; use uint16 or uint32")
        if self.source in ("files", "tokens") and not self.train_files:
            raise ValueError(f"data.tasks[{self.name}]: source {self.source!r} needs train_files")
        if self.source == "tokens" and not self.val_files:
            raise ValueError(f"data.tasks[{self.name}]: source 'tokens' needs val_files (token files, a folder or a "
                             "glob)")
        if self.source == "hf" and not self.dataset:
            raise ValueError(f"data.tasks[{self.name}]: source 'hf' needs dataset (a save_to_disk folder, data files "
                             "or a hub name in the local cache)")
        hf_only = {"dataset": self.dataset, "dataset_config": self.dataset_config, "val_split": self.val_split,
                   "split": None if self.split == "train" else self.split}
        ignored = sorted(key for key, value in hf_only.items() if value is not None)
        if self.source != "hf" and ignored:
            raise ValueError(f"data.tasks[{self.name}]: {', '.join(ignored)} would be ignored with source "
                             f"{self.source!r} (they are read by source 'hf' only); drop them or set source: hf")
        if self.source == "hf" and self.val_split is not None and self.val_split == self.split:
            raise ValueError(f"data.tasks[{self.name}]: val_split={self.val_split!r} is the training split; give "
                             "another split, or null to hold out val_fraction of it by hash")
        if self.max_train_documents is not None and self.max_train_documents < 1:
            raise ValueError(f"data.tasks[{self.name}].max_train_documents must be >= 1 or null")
        if self.budget_tokens is not None and self.budget_tokens < 1:
            raise ValueError(f"data.tasks[{self.name}].budget_tokens must be >= 1 or null")
        self._check_debian_fields()

    def _check_debian_fields(self) -> None:
        """`packages` and `max_packages` choose Debian packages: refused on another source (they would do nothing)
        and checked as `DebianDocsConfig` checks them, so that a bad name is refused before anything downloads."""
        where = f"data.tasks[{self.name}]"
        given = [key for key, unset in (("packages", not self.packages), ("max_packages", self.max_packages is None))
                 if not unset]
        if given and self.source != "debian":
            raise ValueError(f"{where}: {' and '.join(given)} choose Debian packages and apply only to source: debian, "
                             f"but this task's source is {self.source!r}; drop {' and '.join(given)} or set "
                             "source: debian")
        if self.source != "debian":
            return
        if self.language not in SUPPORTED_LANGUAGES:
            raise ValueError(f"{where}: source debian has no language {self.language!r}; set language to one of "
                             f"{', '.join(SUPPORTED_LANGUAGES)} (or use source: files for another language)")
        if isinstance(self.packages, str):
            raise ValueError(f"{where}.packages must be a list such as [debian-reference-fr, debian-handbook], "
                             f"not the string {self.packages!r}")
        for spec in self.packages:
            if (problem := package_spec_problem(spec)) is not None:
                raise ValueError(f"{where}.packages: {problem}")
        if self.max_packages is not None and self.max_packages < 1:
            raise ValueError(f"{where}.max_packages={self.max_packages} must be >= 1, or null to read every package")


@dataclass
class TokenizerConfig:
    """Which tokenizer turns text into tokens."""

    path: str | None = None
    """A local tokenizer directory (e.g. Llama 3's) loaded with transformers.AutoTokenizer; null trains one."""
    vocab_size: int = 4096
    """Vocabulary size of the trained byte-level BPE (ignored when `path` is set)."""
    train_chars_per_task: int = 2_000_000
    """Characters of each task's training text the BPE is trained on (equal shares keep every language covered)."""
    min_frequency: int = 2
    """A pair must occur this often to be merged."""

    def __post_init__(self) -> None:
        if not 256 + 1 <= self.vocab_size <= 2**32:
            raise ValueError(f"data.tokenizer.vocab_size={self.vocab_size} must be at least 257 "
                             "(256 byte tokens plus the end-of-text token) and at most 2**32")
        if self.train_chars_per_task < 10_000:
            raise ValueError(f"data.tokenizer.train_chars_per_task={self.train_chars_per_task} is too small "
                             "to learn merges; use at least 10000")
        if self.min_frequency < 1:
            raise ValueError("data.tokenizer.min_frequency must be >= 1")


@dataclass
class DataConfig:
    """The task sequence, its budgets and the cache where token shards live."""

    tasks: list[TaskConfig] = field(
        default_factory=lambda: [TaskConfig(name=n) for n in ("en", "fr", "de", "ar", "ja")]
    )
    """The tasks in training order (the paper's: English, French, German, Arabic, Japanese)."""
    data_dir: str = "~/.cache/mer"
    """Cache of tokenizers and token shards (shared by all runs; safe for concurrent jobs)."""
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    """The tokenizer."""
    budget_tokens: int | None = 100_000
    """Tokens of NEW data per task (replay comes on top). Exactly one of budget_tokens / budget_steps is set."""
    budget_steps: int | None = None
    """Alternative budget: optimizer steps per task."""
    allow_repeat: bool = False
    """Allow a budget larger than a task's training data (the stream then starts a new, reshuffled epoch)."""
    eval_tokens: int | None = None
    """Held-out span of every task: its validation split's first this many tokens, the same for every model
    whatever its seq_len (null: the whole split). Longer than a task's split is refused before training.
    Replaces data.eval_blocks (blocks of seq_len + 1 tokens, which gave models of other seq_len other text)."""
    min_val_tokens: int = 4096
    """Fewest tokens a task's validation split may have, checked for every task once it is tokenized (before any
    training): a smaller split is refused, since every loss, forgetting figure and fit is read from it. 4096 is 32
    disjoint windows of the 128-token context of the CPU models (2 of a 2048-token one) and a few hundred sentences:
    fewer, and the held-out loss of a task rests on a handful of paragraphs. Lower it knowingly for tiny tests."""

    def __post_init__(self) -> None:
        if not self.tasks:
            raise ValueError("data.tasks is empty; give at least one task")
        names = [t.name for t in self.tasks]
        if len(set(names)) != len(names):
            raise ValueError(f"data.tasks has duplicate task names {names}; names must be unique")
        if (self.budget_tokens is None) == (self.budget_steps is None):
            raise ValueError("set exactly one of data.budget_tokens and data.budget_steps (the other to null)")
        if self.budget_tokens is not None and self.budget_tokens < 1:
            raise ValueError(f"data.budget_tokens={self.budget_tokens} must be >= 1")
        if self.budget_steps is not None and self.budget_steps < 1:
            raise ValueError(f"data.budget_steps={self.budget_steps} must be >= 1")
        per_task = [t.name for t in self.tasks if t.budget_tokens is not None]
        if self.budget_steps is not None and per_task:
            raise ValueError(f"data.budget_steps={self.budget_steps} is set together with a per-task budget_tokens "
                             f"(tasks {per_task}): a budget is either steps (the same for every task) or tokens; "
                             "drop data.budget_steps, or the tasks' budget_tokens")
        if self.min_val_tokens < 2:
            raise ValueError(f"data.min_val_tokens={self.min_val_tokens} must be >= 2 (one target needs a token "
                             "before it)")
        if self.eval_tokens is not None and self.eval_tokens < 2:
            raise ValueError(f"data.eval_tokens={self.eval_tokens} must be >= 2 (one target needs a token before it), "
                             "or null to evaluate on each task's whole validation split")
