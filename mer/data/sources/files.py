"""The user's own corpora: plain text, JSONL (a text field) or Parquet files, directories or globs of them.

This is how people keep DCLM or OSCAR exports: many `*.jsonl(.gz)` or `*.parquet` files in a folder.
Documents are streamed file by file, never loaded whole. The validation split is either given as its
own files or taken by a fixed rule: a document is held out when a hash of its text falls below
`val_fraction`, which is stable under reordering and needs no extra pass.
"""

from __future__ import annotations

import glob
import gzip
import hashlib
import io
import json
import zlib
from collections.abc import Iterator, Sequence
from functools import partial
from itertools import islice
from pathlib import Path

from mer.data.byte_range import RangeFile
from mer.data.corpus import DataError, TaskCorpus
from mer.data.identity import IdentityBook, combined_hash, identify_files
from mer.data.sources.file_pieces import FileReading, file_pieces

TEXT_SUFFIXES = (".txt", ".text", ".md")
JSONL_SUFFIXES = (".jsonl", ".json", ".ndjson")
PARQUET_SUFFIXES = (".parquet", ".pq")
SUPPORTED = TEXT_SUFFIXES + JSONL_SUFFIXES + PARQUET_SUFFIXES


def _kind(path: Path) -> str:
    name = path.name.lower()
    if name.endswith(".gz"):
        name = name[:-3]
    for kind, suffixes in (("text", TEXT_SUFFIXES), ("jsonl", JSONL_SUFFIXES), ("parquet", PARQUET_SUFFIXES)):
        if name.endswith(suffixes):
            return kind
    return "unknown"


def resolve_files(patterns: Sequence[str], task: str, role: str) -> list[Path]:
    """Expand files, directories (recursively) and globs into a sorted, de-duplicated list of files."""
    found: list[Path] = []
    for pattern in patterns:
        expanded = Path(pattern).expanduser()
        if expanded.is_dir():
            matches = [p for p in expanded.rglob("*") if p.is_file() and _kind(p) != "unknown"]
        elif expanded.is_file():
            matches = [expanded]
        else:
            matches = [Path(p) for p in glob.glob(str(expanded), recursive=True) if Path(p).is_file()]
        if not matches:
            raise DataError(
                f"task {task!r}: {role} path {pattern!r} matches no file (supported: "
                f"{', '.join(SUPPORTED)}, optionally .gz); fix the path in data.tasks"
            )
        for path in matches:
            if _kind(path) == "unknown":
                raise DataError(
                    f"task {task!r}: cannot read {path}: unknown file type; use one of {', '.join(SUPPORTED)}"
                )
        found.extend(matches)
    return sorted({p.resolve() for p in found})


def _open_text(path: Path, encoding: str, errors: str, byte_range: tuple[int, int] | None = None) -> io.TextIOBase:
    if byte_range is not None:  # a piece of a large plain file (mer.data.sources.file_pieces)
        raw = io.BufferedReader(RangeFile(path, *byte_range), buffer_size=1 << 20)
    else:
        raw = gzip.open(path, "rb") if path.name.lower().endswith(".gz") else open(path, "rb")
    return io.TextIOWrapper(raw, encoding=encoding, errors=errors, newline=None)


def _line_label(path: Path, line_number: int, byte_range: tuple[int, int] | None) -> str:
    """Where a line is, for a message: `path:N`, or within a piece of the file, its byte range and line in it."""
    if byte_range is None:
        return f"{path}:{line_number}"
    return f"{path} (line {line_number} of the piece from byte {byte_range[0]})"


def _documents_in_file(path: Path, text_field: str, encoding: str, errors: str, split: str,
                       byte_range: tuple[int, int] | None = None) -> Iterator[str]:
    """The documents of a file, or of its bytes [start, end) when `byte_range` is given (cut at document starts)."""
    kind = _kind(path)
    try:
        if kind == "parquet":
            yield from _parquet_documents(path, text_field)
        elif kind == "jsonl":
            with _open_text(path, encoding, errors, byte_range) as handle:
                for line_number, line in enumerate(handle, 1):
                    if not line.strip():
                        continue
                    try:
                        record = json.loads(line)
                    except json.JSONDecodeError as error:
                        raise DataError(f"{_line_label(path, line_number, byte_range)}: not valid JSON ({error.msg}); "
                                        "each line of a JSONL file must be one JSON object") from None
                    if not isinstance(record, dict) or text_field not in record:
                        where = _line_label(path, line_number, byte_range)
                        raise DataError(f"{where}: no field {text_field!r}; set the task's "
                                        "text_field to the name of the field holding the text")
                    text = record[text_field]
                    if not isinstance(text, str):  # a list, a number, null: never skipped without a word
                        where = _line_label(path, line_number, byte_range)
                        raise DataError(f"{where}: field {text_field!r} holds {type(text).__name__} "
                                        f"{_shown(text)}, not a string; each record's {text_field!r} must be the "
                                        "document's text (fix or drop that record, or set the task's text_field)")
                    if text.strip():
                        yield text
        else:
            with _open_text(path, encoding, errors, byte_range) as handle:
                yield from _split_text(handle, split)
    except UnicodeDecodeError as error:
        raise DataError(
            f"{path}: bytes at offset {error.start} are not valid {encoding}; convert the file to UTF-8, "
            f"set the task's encoding, or set decode_errors=replace to replace bad bytes"
        ) from None
    except (EOFError, gzip.BadGzipFile, zlib.error) as error:  # a cut or damaged .gz file
        raise DataError(f"{path}: cannot decompress ({error}); the file is damaged or incomplete, copy it "
                        "again or remove it from the task's files") from None


def _shown(value: object, limit: int = 60) -> str:
    """A short excerpt of a value for a message."""
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[:limit] + "..."


def _split_text(handle: io.TextIOBase, split: str) -> Iterator[str]:
    if split == "file":
        text = handle.read()
        if text.strip():
            yield text
        return
    paragraph: list[str] = []
    for line in handle:
        if split == "line":
            if line.strip():
                yield line.rstrip("\n")
            continue
        if line.strip():
            paragraph.append(line.rstrip("\n"))
        elif paragraph:
            yield "\n".join(paragraph)
            paragraph = []
    if paragraph:
        yield "\n".join(paragraph)


def _parquet_documents(path: Path, text_field: str) -> Iterator[str]:
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
    except Exception as error:  # pyarrow raises several types for corrupt files
        raise DataError(f"{path}: cannot read as Parquet ({error}); check the file is complete") from None
    if text_field not in parquet.schema_arrow.names:
        raise DataError(f"{path}: no column {text_field!r} (columns: {parquet.schema_arrow.names}); "
                        "set the task's text_field")
    for batch in parquet.iter_batches(columns=[text_field], batch_size=4096):
        for text in batch.column(0).to_pylist():
            if isinstance(text, str) and text.strip():
                yield text


def held_out_by_hash(text: str, val_fraction: float) -> bool:
    digest = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64 < val_fraction


def build_files_corpus(
    name: str,
    language: str,
    train_files: Sequence[str],
    val_files: Sequence[str] = (),
    val_fraction: float = 0.01,
    text_field: str = "text",
    text_split: str = "paragraph",
    encoding: str = "utf-8",
    decode_errors: str = "strict",
    max_train_documents: int | None = None,
    identity: IdentityBook | None = None,
) -> TaskCorpus:
    """A task from local files. Without `val_files`, documents are held out by the fixed hash rule.

    The files are identified by their content hashes: taken from `identity`'s records while their stamps match
    (a run start reads no corpus byte, `mer.data.identity`), hashed otherwise (and always without a book)."""
    if not train_files:
        raise DataError(f"task {name!r}: source 'files' needs train_files (paths, directories or globs)")
    if text_split not in ("paragraph", "line", "file"):
        raise DataError(f"task {name!r}: text_split={text_split!r}; use paragraph, line or file")
    train_paths = resolve_files(train_files, name, "train_files")
    val_paths = resolve_files(val_files, name, "val_files") if val_files else []
    digests = [digest for digest, _ in identify_files(train_paths, identity, name, "train_files", train_files)]
    if val_paths:
        digests += [digest for digest, _ in identify_files(val_paths, identity, name, "val_files", val_files)]
    content = combined_hash(train_paths + val_paths, digests)
    fingerprint = hashlib.sha256(
        f"files|{content}|val={len(val_paths)}|{val_fraction}|{text_field}|{text_split}|{encoding}|"
        f"{decode_errors}|max_train={max_train_documents}".encode()
    ).hexdigest()

    def documents(paths: list[Path]) -> Iterator[str]:
        for path in paths:
            yield from _documents_in_file(path, text_field, encoding, decode_errors, text_split)

    def train() -> Iterator[str]:
        kept = (text for text in documents(train_paths) if val_paths or not held_out_by_hash(text, val_fraction))
        return islice(kept, max_train_documents)

    def val() -> Iterator[str]:
        if val_paths:
            return documents(val_paths)
        return (text for text in documents(train_paths) if held_out_by_hash(text, val_fraction))

    shown = ", ".join(str(p) for p in train_paths[:3]) + (" ..." if len(train_paths) > 3 else "")
    return TaskCorpus(
        name=name,
        language=language,
        description=f"{len(train_paths)} local file(s): {shown}"
        + (f"; validation from {len(val_paths)} file(s)" if val_paths else f"; {val_fraction:.1%} held out by hash"),
        fingerprint=fingerprint,
        train_documents=train,
        val_documents=val,
        # max_train_documents counts across files: such a (small, quick) task is prepared as one piece.
        pieces=None if max_train_documents is not None else partial(
            file_pieces, FileReading(_kind, _documents_in_file, held_out_by_hash), train_paths, val_paths,
            val_fraction, text_field, text_split, encoding, decode_errors),
    )
