"""`python -m mer.data.prepare --verify`: every byte of a prepared sequence hashed again, on demand.

A run start trusts stamps (`mer.data.identity` for the user's input files, `mer.data.shard_check` for our shards):
cheap, and blind to bytes changed under the file system. This check reads everything instead: each input file
against the content hash recorded when it was prepared, each token shard against its manifest's sha256 and
vocabulary, the cached tokenizer against its record. It prepares nothing: data that was never prepared is refused.
"""

from __future__ import annotations

import json
from pathlib import Path

from mer.data.config import DataConfig
from mer.data.corpus import DataError
from mer.data.identity import IdentityBook
from mer.data.shard_check import rebuild_hint, scan_tokens
from mer.data.shards import SPLITS, ShardInfo, shard_directory


def _check_shards(info: ShardInfo) -> str:
    """Hash our shard files again, against the manifest; a line saying so."""
    total = files = 0
    for split in SPLITS:
        for shard in info.shards(split):
            path = shard["path"]
            if not path.is_file():
                raise DataError(f"token shard {path} is missing; {rebuild_hint(info.directory, info.manifest)}")
            digest, largest = scan_tokens(path, info.dtype)
            if digest != shard["sha256"]:
                raise DataError(f"token shard {path} does not match {info.directory / 'manifest.json'} (sha256 "
                                f"{digest[:16]}..., recorded {shard['sha256'][:16]}...); "
                                f"{rebuild_hint(info.directory, info.manifest)}")
            if largest >= int(info.manifest["vocab_size"]):
                raise DataError(f"token shard {path} holds token id {largest} >= the vocabulary "
                                f"{info.manifest['vocab_size']}; {rebuild_hint(info.directory, info.manifest)}")
            total, files = total + path.stat().st_size, files + 1
    return f"{files} shard file(s) of {info.directory.name} ({total:,} bytes) match their manifest"


def verify_data(cfg: DataConfig) -> list[str]:
    """Hash every file of `cfg`'s prepared data again; one line per task saying what was checked.
    Raises DataError naming the first file that differs from what was recorded at preparation."""
    from mer.data.corpus_build import build_corpus
    from mer.data.token_files import register_token_files
    from mer.data.tokenizer import prepare_tokenizer, tokenizer_hash
    from mer.data.tokenizer_check import verify_cached_tokenizer

    data_dir = Path(cfg.data_dir).expanduser()
    book = IdentityBook.of(data_dir, on_change="verify")
    text_tasks = [t for t in cfg.tasks if t.source != "tokens"]
    corpora = {t.name: build_corpus(t, data_dir, book) for t in text_tasks}  # re-hashes every input file
    lines = []
    if text_tasks and cfg.tokenizer.path is None:
        directory = data_dir / "tokenizers" / tokenizer_hash(list(corpora.values()), cfg.tokenizer)
        if not directory.is_dir():
            raise DataError(f"the tokenizer of this data was never trained in {data_dir} (no {directory}); run "
                            "`python -m mer.data.prepare` with the same data options first")
        verify_cached_tokenizer(directory)
        lines.append(f"tokenizer {directory.name}: its files match their record")
    tokenizer = digest = None
    for task in cfg.tasks:
        if task.source == "tokens":
            if tokenizer is None:
                tokenizer, digest = prepare_tokenizer([], cfg.tokenizer, data_dir)
            from mer.data.shards import token_dtype

            dtype = task.token_dtype or token_dtype(len(tokenizer)).name
            register_token_files(task.name, task.language, task.train_files, task.val_files, dtype, tokenizer,
                                 digest, data_dir, book)
            shards_line = "token ids below the vocabulary"
        else:
            digest_text = tokenizer_hash(list(corpora.values()), cfg.tokenizer)
            directory = shard_directory(data_dir, digest_text, corpora[task.name])
            manifest_path = directory / "manifest.json"
            if not manifest_path.is_file():
                raise DataError(f"task {task.name!r} was never prepared in {data_dir} (no {manifest_path}); run "
                                "`python -m mer.data.prepare` with the same data options first")
            info = ShardInfo(task.name, directory, json.loads(manifest_path.read_text()))
            shards_line = _check_shards(info)
        read = [size for name, _, size in book.hashed if name == task.name]
        files, size = len(read), sum(read)
        inputs = (f"{files} input file(s) ({size:,} bytes) match the content hashes recorded at preparation"
                  if files else "no input file of yours (built-in source)")
        lines.append(f"task {task.name}: {inputs}; {shards_line}")
    return lines
