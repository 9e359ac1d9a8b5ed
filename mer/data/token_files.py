"""`source: tokens`: flat token arrays made elsewhere (one file, a folder or a glob of them), used in place.

Each file is a raw little-endian array of token ids (uint16 or uint32, no header), documents separated as its
writer chose. A task's files are taken in sorted path order and read end to end as one array
(`mer.data.token_view`). At preparation every file is hashed once and its largest token id found in the same
pass; later starts compare stamps only (`mer.data.identity`), so a 400 GB pre-tokenized corpus costs a `stat` per
file at a run start. The registration (a manifest, never a copy of the tokens) is written under
`<data_dir>/shards/<tokenizer hash>/<task>-tokens-<content hash>/`.
"""

from __future__ import annotations

import glob
import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mer.data.atomic import atomic_directory
from mer.data.corpus import DataError
from mer.data.identity import IdentityBook, combined_hash, identify_files
from mer.data.shard_check import scan_tokens
from mer.data.shards import SHARD_FORMAT, ShardInfo

FOLDER_SUFFIX = ".bin"
"""A folder given as a task's token files contributes its `*.bin` files (recursively); a glob takes what it matches."""


def resolve_token_files(patterns: Sequence[str], task: str, role: str) -> list[Path]:
    """Files, folders (their `*.bin`, recursively) and globs -> a sorted, de-duplicated list of files."""
    found: list[Path] = []
    for pattern in patterns:
        expanded = Path(pattern).expanduser()
        if expanded.is_dir():
            matches = [p for p in expanded.rglob(f"*{FOLDER_SUFFIX}") if p.is_file()]
        elif expanded.is_file():
            matches = [expanded]
        else:
            matches = [Path(p) for p in glob.glob(str(expanded), recursive=True) if Path(p).is_file()]
        if not matches:
            raise DataError(f"task {task!r}: token {role} {pattern!r} matches no file (a folder contributes its "
                            f"*{FOLDER_SUFFIX} files); fix the task's {role}")
        found.extend(matches)
    return sorted({p.resolve() for p in found})


def _check_size(path: Path, dtype: np.dtype, task: str) -> None:
    size = path.stat().st_size
    if size == 0 or size % dtype.itemsize:
        raise DataError(f"task {task!r}: {path} has {size} bytes, not a whole number of {dtype} tokens; "
                        "set token_dtype to the type the file was written with")


def register_token_files(
    name: str, language: str, train_files: Sequence[str], val_files: Sequence[str], dtype_name: str, tokenizer,
    tokenizer_hash: str, data_dir: Path, identity: IdentityBook | None = None,
) -> ShardInfo:
    """Use pre-tokenized flat token arrays in place: check them and write a manifest beside the cache."""
    dtype = np.dtype(dtype_name)

    def hasher(path: Path) -> tuple[str, dict]:
        digest, largest = scan_tokens(path, dtype)
        return digest, {"max_token_id": largest, "dtype": dtype.name}

    splits, files = {}, {}
    for split, role, patterns in (("train", "train_files", train_files), ("val", "val_files", val_files)):
        paths = resolve_token_files(patterns, name, role)
        for path in paths:
            _check_size(path, dtype, name)
        found = identify_files(paths, identity, name, role, [*patterns, f"dtype={dtype.name}"], hasher)
        for path, (_, facts) in zip(paths, found, strict=True):
            if int(facts["max_token_id"]) >= len(tokenizer):
                raise DataError(f"task {name!r}: {path} holds token id {facts['max_token_id']} but the tokenizer has "
                                f"{len(tokenizer)} tokens; give the tokenizer the file was made with "
                                "(data.tokenizer.path), or set token_dtype to the type the file was written with")
        sizes = [path.stat().st_size // dtype.itemsize for path in paths]
        splits[split] = {"tokens": int(sum(sizes)), "sha256": combined_hash(paths, [d for d, _ in found]),
                         "max_token_id": max(int(facts["max_token_id"]) for _, facts in found),
                         "shards": [{"file": str(p), "tokens": int(n), "sha256": d}
                                    for p, n, (d, _) in zip(paths, sizes, found, strict=True)]}
        files[split] = [str(p) for p in paths]
    key = hashlib.sha256(json.dumps([dtype.name, splits], sort_keys=True).encode()).hexdigest()
    final = data_dir / "shards" / tokenizer_hash / f"{name}-tokens-{key[:12]}"
    manifest = {
        "format": SHARD_FORMAT, "task": name, "language": language, "source": "pre-tokenized files",
        "fingerprint": key, "tokenizer_hash": tokenizer_hash, "vocab_size": len(tokenizer),
        "eos_token_id": tokenizer.eos_token_id, "dtype": dtype.name,
        "document_separator": "as written by the user", "splits": splits, "files": files,
    }
    with atomic_directory(final) as staging:
        if staging is not None:
            (staging / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return ShardInfo(name=name, directory=final, manifest=manifest)
