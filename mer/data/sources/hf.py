"""`source: hf`: a Hugging Face `datasets` data set read from disk, offline, streamed.

`dataset` is one of
- a folder written by `Dataset.save_to_disk` / `DatasetDict.save_to_disk` (read with `load_from_disk`: its Arrow
  files are memory-mapped, never loaded whole);
- Parquet, Arrow or JSONL data files: one file, a glob, or a folder of them (a folder's layout and its README's
  configs are read the way `datasets.load_dataset(folder)` reads them), streamed (`streaming=True`: no Arrow copy
  of a 400 GB corpus is written to the `datasets` cache);
- a hub name (`HuggingFaceFW/fineweb-2`) whose snapshot is already in the local Hugging Face cache: it is found
  there without any network (`local_files_only`) and read as a folder of data files.

Nothing is ever downloaded: `HF_DATASETS_OFFLINE` and `HF_HUB_OFFLINE` are set while the data set is opened. The
text is the column `text_field` of the split `split`; the validation text is the split `val_split`, or, when
that is null, the share `val_fraction` of documents held out by the same hash rule as `source: files`. The data
set's files are identified by content hash and stamp like a corpus of files (`mer.data.identity`).

For sharded preparation (`mer.data.shard_build`) a split is cut into pieces with the library's own `shard`: a
streamed split into its data files (`IterableDataset.shard`, one piece per file), a memory-mapped one into
contiguous row ranges of about `piece_bytes` of Arrow data (`Dataset.shard(contiguous=True)`). The pieces in order
give the documents in the order of the whole split, so the shards are the same tokens however many workers build
them (tested).
"""

from __future__ import annotations

import glob
import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from itertools import islice
from pathlib import Path

from mer.data.config import TaskConfig
from mer.data.corpus import DataError, Piece, TaskCorpus
from mer.data.identity import IdentityBook, combined_hash, identify_files
from mer.data.sources.files import held_out_by_hash

DATA_SUFFIXES = {".parquet": "parquet", ".arrow": "arrow", ".jsonl": "json", ".json": "json", ".ndjson": "json",
                 ".jsonl.gz": "json", ".json.gz": "json"}
BATCH_ROWS = 1024
"""Rows read per batch from a data set: a bounded amount of text in memory at once."""
INSTALL = "pip install 'mer[hf]' (the Hugging Face `datasets` library)"


@contextmanager
def _offline() -> Iterator[None]:
    """No network while a data set is opened: a missing file is an error here, never a download."""
    keys = ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE")
    saved = {key: os.environ.get(key) for key in keys}
    os.environ.update({key: "1" for key in keys})
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _suffix_kind(path: Path) -> str | None:
    name = path.name.lower()
    return next((kind for suffix, kind in DATA_SUFFIXES.items() if name.endswith(suffix)), None)


def _is_saved_to_disk(folder: Path) -> bool:
    return (folder / "dataset_info.json").is_file() or (folder / "dataset_dict.json").is_file()


def _hub_snapshot(name: str, task: str) -> Path:
    """The local folder of a hub data set already in the cache; refused (never downloaded) when it is not."""
    from huggingface_hub import snapshot_download

    try:
        with _offline():
            return Path(snapshot_download(repo_id=name, repo_type="dataset", local_files_only=True))
    except Exception:  # LocalEntryNotFoundError, a malformed name (HFValidationError): not here either way
        raise DataError(f"task {task!r}: dataset={name!r} is neither a folder, data files, nor a hub data set in the "
                        "local Hugging Face cache; give a save_to_disk folder or data files, or download it once "
                        f"where there is network (`huggingface-cli download --repo-type dataset {name}`)") from None


class _Source:
    """What `dataset` names: how to open one split, and the files that make it up (for its identity)."""

    def __init__(self, task: TaskConfig) -> None:
        self.task = task.name
        self.config_name = task.dataset_config
        self.train_split = task.split
        given = Path(str(task.dataset)).expanduser()
        self.saved = given.is_dir() and _is_saved_to_disk(given)
        if given.is_dir():
            self.folder, self.files = given.resolve(), None
        elif given.is_file() or glob.has_magic(str(given)):
            matches = sorted({Path(p).resolve() for p in glob.glob(str(given), recursive=True) if Path(p).is_file()})
            if not matches:
                raise DataError(f"task {task.name!r}: dataset={task.dataset!r} matches no file; fix the path")
            kinds = {_suffix_kind(p) for p in matches}
            if None in kinds or len(kinds) != 1:
                raise DataError(f"task {task.name!r}: dataset={task.dataset!r} matches {len(matches)} file(s) of "
                                f"types {sorted(str(k) for k in kinds)}; give data files of one kind "
                                f"({', '.join(DATA_SUFFIXES)})")
            self.folder, self.files, self.kind = None, matches, kinds.pop()
        else:
            self.folder, self.files = _hub_snapshot(str(task.dataset), task.name), None

    def identity_files(self) -> list[Path]:
        if self.files is not None:
            return self.files
        files = sorted(p.resolve() for p in self.folder.rglob("*") if p.is_file() and not p.name.startswith(".")
                       and ".cache" not in p.parts)
        if not files:
            raise DataError(f"task {self.task!r}: the data set folder {self.folder} holds no file")
        return files

    def split(self, split: str):
        """The split, opened lazily (memory-mapped or streamed)."""
        try:
            import datasets
        except ImportError:
            raise DataError(f"task {self.task!r}: source 'hf' needs the `datasets` library; {INSTALL}") from None
        datasets.disable_progress_bars()
        try:
            with _offline():
                if self.saved:
                    loaded = datasets.load_from_disk(str(self.folder))
                    if isinstance(loaded, datasets.DatasetDict):
                        if split not in loaded:
                            raise KeyError(split)
                        return loaded[split]
                    if split != "train":  # a single saved Dataset has no split names: it is the training split
                        raise KeyError(split)
                    return loaded
                if self.files is not None:
                    if split != self.train_split:  # given files are one split: the one trained on
                        raise KeyError(split)
                    return datasets.load_dataset(self.kind, data_files={split: [str(p) for p in self.files]},
                                                 split=split, streaming=True)
                return datasets.load_dataset(str(self.folder), self.config_name, split=split, streaming=True)
        except (KeyError, ValueError) as error:
            if isinstance(error, KeyError) or "split" in str(error).lower():
                raise DataError(f"task {self.task!r}: the data set {self.folder or self.files[0]} has no split "
                                f"{split!r}; set the task's split/val_split to one it has") from None
            raise DataError(f"task {self.task!r}: cannot open the data set ({error}); check dataset and "
                            "dataset_config") from None


def _texts(dataset, column: str, task: str, where: str) -> Iterator[str]:
    """The non-empty strings of one column, in order, a batch of rows at a time."""
    names = dataset.column_names
    if names is not None and column not in names:
        raise DataError(f"task {task!r}: the data set's {where} split has no column {column!r} (columns: {names}); "
                        "set the task's text_field")
    for batch in dataset.select_columns([column]).iter(batch_size=BATCH_ROWS):
        if column not in batch:
            raise DataError(f"task {task!r}: the data set's {where} split has no column {column!r} "
                            f"(columns: {sorted(batch)}); set the task's text_field")
        for text in batch[column]:
            if text is not None and not isinstance(text, str):
                raise DataError(f"task {task!r}: column {column!r} holds {type(text).__name__}, not text; "
                                "set the task's text_field to a column of strings")
            if text and text.strip():
                yield text


def build_hf_corpus(task: TaskConfig, identity: IdentityBook | None = None) -> TaskCorpus:
    """A task from a Hugging Face data set on disk (module docstring)."""
    source = _Source(task)
    files = source.identity_files()
    digests = [digest for digest, _ in identify_files(files, identity, task.name, "dataset", [str(task.dataset)])]
    fingerprint = hashlib.sha256(
        f"hf|{combined_hash(files, digests)}|{task.dataset_config}|{task.split}|{task.val_split}|{task.val_fraction}|"
        f"{task.text_field}|max_train={task.max_train_documents}".encode()
    ).hexdigest()
    # Both splits and the column are checked now, before any tokenizer is trained (the first record is read).
    train_split = source.split(task.split)
    val_split = source.split(task.val_split) if task.val_split is not None else None
    for where, split in (("train", train_split), ("validation", val_split)):
        if split is not None:
            next(iter(_texts(split, task.text_field, task.name, where)), None)

    def train() -> Iterator[str]:
        texts = _texts(source.split(task.split), task.text_field, task.name, task.split)
        kept = texts if task.val_split is not None else (t for t in texts if not held_out_by_hash(t, task.val_fraction))
        return islice(kept, task.max_train_documents)

    def val() -> Iterator[str]:
        if task.val_split is not None:
            return _texts(source.split(task.val_split), task.text_field, task.name, task.val_split)
        texts = _texts(source.split(task.split), task.text_field, task.name, task.split)
        return (t for t in texts if held_out_by_hash(t, task.val_fraction))

    held_out = (f"split {task.val_split!r}" if task.val_split is not None
                else f"{task.val_fraction:.1%} of {task.split!r} held out by hash")
    return TaskCorpus(
        name=task.name, language=task.language or task.name,
        description=f"Hugging Face data set {task.dataset} ({len(files)} file(s)), split {task.split!r}, column "
                    f"{task.text_field!r}; validation: {held_out}",
        fingerprint=fingerprint, train_documents=train, val_documents=val,
        # max_train_documents counts across the split: such a (small, quick) task is prepared as one piece.
        pieces=None if task.max_train_documents is not None else partial(hf_pieces, source, task),
    )


def _split_pieces(dataset, piece_bytes: int) -> int:
    """How many pieces a split is cut into: one per data file when streamed, else row ranges of ~piece_bytes."""
    if hasattr(dataset, "num_shards"):  # IterableDataset: its shards are its data files, in order
        return max(1, int(dataset.num_shards))
    return max(1, -(-int(dataset.data.nbytes) // piece_bytes))


def _read_piece(source: _Source, task: TaskConfig, split: str, role: str, index: int,
                count: int) -> Iterator[tuple[str, str]]:
    part = source.split(split).shard(num_shards=count, index=index, contiguous=True)
    for text in _texts(part, task.text_field, task.name, split):
        if role == "val" or task.val_split is not None:
            yield role, text
        else:  # the fixed hash rule, document by document, as `val_documents` applies it
            yield ("val" if held_out_by_hash(text, task.val_fraction) else "train"), text


def hf_pieces(source: _Source, task: TaskConfig, piece_bytes: int) -> list[Piece]:
    """The pieces of an `hf` task: its training split's, then (with `val_split`) its validation split's."""
    pieces = []
    for role, split in (("train", task.split), ("val", task.val_split)):
        if split is None:
            continue
        count = _split_pieces(source.split(split), piece_bytes)
        pieces += [Piece(key=f"{role}:{split}:{index}/{count}",
                         read=partial(_read_piece, source, task, split, role, index, count)) for index in range(count)]
    return pieces
