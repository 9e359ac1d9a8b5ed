"""The tokenizer's files checked before they are loaded (docs/run_directory.md, "What is verified when").

A tokenizer trained by `mer` is cached in `<data_dir>/tokenizers/<hash>/` with `files.sha256.json`, the sha256
of every file `save_pretrained` wrote, recorded in the staging folder before it was published. Each
preparation (so each run's start) compares the files with it: a missing or changed `tokenizer.json` is
refused naming the file, with the fix (delete the folder: BPE training is deterministic, so it is retrained
identically and the shards made with it stay valid). A user's tokenizer folder (`data.tokenizer.path`) is
named by the hash of its files already, so a change gives other shards and a resumed run is refused; here
it only has to hold a loadable tokenizer, and a missing `tokenizer.json` is named as such.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

from mer.data.corpus import DataError
from mer.files.hashing import file_sha256

RECORD_FILE = "files.sha256.json"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "tiktoken.model")
"""Any one of these holds a vocabulary AutoTokenizer can load (fast tokenizer, sentencepiece, BPE, tiktoken)."""


def record_tokenizer_files(directory: Path) -> None:
    """Write the sha256 of every file of a freshly trained tokenizer folder (before it is published)."""
    files = {p.name: file_sha256(p) for p in sorted(directory.iterdir()) if p.is_file() and p.name != RECORD_FILE}
    (directory / RECORD_FILE).write_text(json.dumps({"files": files}, indent=2))


def _retrain_hint(directory: Path) -> str:
    return (f"delete the folder, the tokenizer is trained again from the same text (identically: training is "
            f"deterministic, so the shards made with it stay valid): `rm -r {shlex.quote(str(directory))}`, then "
            "run the same command again")


def verify_cached_tokenizer(directory: Path) -> None:
    """Refuse a cached tokenizer folder whose files are missing or differ from those recorded when it was trained.

    A folder cached by an older mer has no record: it must at least hold tokenizer.json, and it is recorded now."""
    record_path = directory / RECORD_FILE
    if not record_path.is_file():
        if not (directory / "tokenizer.json").is_file():
            raise DataError(f"the cached tokenizer {directory} has no tokenizer.json; {_retrain_hint(directory)}")
        try:
            record_tokenizer_files(directory)
        except OSError:
            pass  # a read-only cache: checked like this again next time
        return
    try:
        recorded = json.loads(record_path.read_text())["files"]
    except (ValueError, KeyError, TypeError) as error:
        raise DataError(f"{record_path} is damaged ({error}); {_retrain_hint(directory)}") from None
    for name, expected in recorded.items():
        path = directory / name
        if not path.is_file():
            raise DataError(f"tokenizer file {path} is missing (it was written when the tokenizer was trained); "
                            f"{_retrain_hint(directory)}")
        digest = file_sha256(path)
        if digest != expected:
            raise DataError(f"tokenizer file {path} changed since the tokenizer was trained (sha256 {digest[:16]}..., "
                            f"recorded {expected[:16]}... in {record_path}); {_retrain_hint(directory)}")


def check_user_tokenizer(directory: Path) -> None:
    """A user's tokenizer folder (data.tokenizer.path) must hold a vocabulary file before transformers is asked."""
    if not any((directory / name).is_file() for name in TOKENIZER_FILES):
        held = sorted(p.name for p in directory.iterdir())[:12]
        raise DataError(f"the tokenizer folder {directory} (data.tokenizer.path) has no tokenizer.json (nor another "
                        f"vocabulary file: {', '.join(TOKENIZER_FILES[1:])}); it holds {held}. Restore tokenizer.json, "
                        "or give the folder save_pretrained wrote")
