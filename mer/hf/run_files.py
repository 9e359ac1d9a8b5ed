"""What a run directory keeps so that it exports on its own: its tokenizer and its base model's configs.

- `tokenizer/`: the files of the tokenizer the run was trained with (data.tokenizer.path, the model.init_from
  folder's, or the cached BPE; weights and model configs left out: a few megabytes at most);
- `base_model/`: for a run continued from a Hugging Face model (model.init_from), that model's config.json
  and generation_config.json (its special-token ids, e.g. Llama 3's list of end-of-text ids, and its
  sampling settings); no weights, the checkpoint holds them.

Both are written at the start of every attempt, atomically (a folder appears whole or not at all), and
summary.json records the hash of the tokenizer's files (`tokenizer_files_hash`). An export reads them from
the run directory and checks that hash first: replacing the base folder's tokenizer after training no
longer changes what an export ships, a changed copy is refused naming the file, and a run directory moved
away from its data folder and its base model still exports.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from mer.files.atomic import publish_directory
from mer.files.hashing import tokenizer_files, tokenizer_files_hash

TOKENIZER_DIR = "tokenizer"
BASE_MODEL_DIR = "base_model"
BASE_MODEL_FILES = ("config.json", "generation_config.json")
"""The files of model.init_from that an export needs besides the weights."""


class RunFilesChanged(ValueError):
    """The tokenizer a run directory keeps is not the one summary.json records."""


def keep_run_files(run_dir: Path, tokenizer_dir: Path, init_from: str | None) -> str:
    """Keep the run's tokenizer (and the base model's configs) in `run_dir` (module docstring); the hash of the
    tokenizer's files, for summary.json's `tokenizer_files_hash`."""
    _keep(run_dir / TOKENIZER_DIR, tokenizer_files(tokenizer_dir))
    if init_from:
        base = Path(init_from).expanduser()
        _keep(run_dir / BASE_MODEL_DIR, [base / name for name in BASE_MODEL_FILES if (base / name).is_file()])
    return tokenizer_files_hash(run_dir / TOKENIZER_DIR)


def _same_files(folder: Path, files: list[Path]) -> bool:
    if not folder.is_dir() or sorted(p.name for p in folder.iterdir()) != sorted(p.name for p in files):
        return False
    return all((folder / p.name).read_bytes() == p.read_bytes() for p in files)


def _keep(final: Path, files: list[Path]) -> None:
    if _same_files(final, files):  # a resume: already there, nothing to write
        return
    for stale in final.parent.glob(f".{final.name}.tmp-*"):  # left by an attempt killed while copying
        shutil.rmtree(stale, ignore_errors=True)
    staging = final.with_name(f".{final.name}.tmp-{os.getpid()}")
    staging.mkdir(parents=True)
    for path in files:
        shutil.copyfile(path, staging / path.name)
    publish_directory(staging, final)


def kept_tokenizer(run_dir: Path, summary: dict) -> Path | None:
    """The run directory's own tokenizer folder, checked against summary.json's hash; None for a run directory of
    an older mer, which kept none. Raises RunFilesChanged naming the folder when its files changed."""
    folder = run_dir / TOKENIZER_DIR
    if not folder.is_dir():
        return None
    recorded = summary.get("tokenizer_files_hash")
    found = tokenizer_files_hash(folder)
    if recorded and found != recorded:
        raise RunFilesChanged(f"the run's tokenizer in {folder} has changed since training (its files hash to {found}, "
                              f"summary.json records {recorded}): the model's token ids would not match it. Restore "
                              "the folder's files (a copy of the tokenizer the run was trained with)")
    return folder


def kept_base_model(run_dir: Path) -> Path | None:
    """The folder of the base model's config.json and generation_config.json the run keeps (None: it keeps none)."""
    folder = run_dir / BASE_MODEL_DIR
    return folder if (folder / "config.json").is_file() else None
