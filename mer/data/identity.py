"""Input files identified once by their content, and by a stamp after that (docs/data.md, "What is verified when").

A user's corpus (`source: files`) or pre-tokenized arrays (`source: tokens`) can be hundreds of GB; hashing every
byte at every run start cost tens of minutes before the first step. So the content hash of each input file is taken
once, when the data is prepared, and recorded in `<data_dir>/identity/` beside the file's stamp: its size, mtime,
ctime and inode. A later start only stats the files (`stat`, no read): a file whose stamp matches its record is
taken to have the recorded content.

What a stamp catches, and what not: any write through the file system changes the mtime and the ctime (setting
the mtime back with `touch -d` or `rsync -t` still changes the ctime, which no user call can set), and a file
replaced by another (a new copy, `mv`) has another inode. A stamp does NOT catch bytes changed under the file
system (bit rot, a disk or network file system that does not update times, a clock that jumps back within the
same tick): `python -m mer.data.prepare --verify` re-hashes every input file on demand for that. A file written
less than two seconds before it was hashed gets no stamp (another write in the same clock tick would leave its
times unchanged: git's "racy" case); it is hashed again, once, at the next start.

A file whose stamp changed is hashed again: the same bytes (a `chmod`, a copy with `cp -p`) just get a new stamp;
other bytes are refused at a run start (`on_change="refuse"`: the run would train on shards of text that is no
longer there, and runs of one sweep would see different data) naming the file and the command that prepares
again, and taken as new data by `python -m mer.data.prepare` (`on_change="rehash"`).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mer.data.corpus import DataError
from mer.files.atomic import write_text
from mer.files.hashing import file_sha256

RACY_NS = 2_000_000_000
"""A file changed this recently (ns) is not stamped: a write in the same clock tick would not change its times."""
ON_CHANGE = ("refuse", "rehash", "verify")
PREPARE_AGAIN = ("prepare it again with `python -m mer.data.prepare` and the same data options as this command "
                 "(it hashes the changed files and tokenizes the new text)")

Hasher = Callable[[Path], tuple[str, dict]]
"""A file -> (sha256 of its bytes, facts found in the same pass, e.g. the largest token id of a token file)."""


def sha256_only(path: Path) -> tuple[str, dict]:
    return file_sha256(path), {}


def file_stamp(path: Path) -> dict[str, int]:
    """What `stat` says about a file: enough to tell that it changed, without reading it."""
    st = path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "ctime_ns": st.st_ctime_ns, "inode": st.st_ino}


@dataclass(frozen=True)
class IdentityBook:
    """Where the content hashes of a data cache's input files are recorded, and what a changed file means."""

    directory: Path
    """`<data_dir>/identity`: one JSON record per task and role (its files' sha256 and stamps)."""
    on_change: str = "rehash"
    """refuse (a run start: changed content is refused), rehash (preparation: changed content is new data) or
    verify (`--verify`: every file is hashed again and must match its record)."""
    hashed: list[tuple[str, Path, int]] = field(default_factory=list, compare=False)
    """(task, file, bytes) of every file hashed through this book, in order: what `--verify` reports it read."""

    def __post_init__(self) -> None:
        if self.on_change not in ON_CHANGE:
            raise ValueError(f"on_change={self.on_change!r}; use one of {ON_CHANGE}")

    @classmethod
    def of(cls, data_dir: Path, on_change: str = "rehash") -> IdentityBook:
        return cls(Path(data_dir) / "identity", on_change)


def record_path(book: IdentityBook, task: str, role: str, patterns: Sequence[str]) -> Path:
    """The record of one task's files in one role, named by what the config says (so that a removed or added file
    is noticed: the patterns stay the same, the files they match do not)."""
    key = hashlib.sha256(json.dumps([task, role, list(patterns)]).encode()).hexdigest()[:16]
    return book.directory / f"{task}-{role}-{key}.json"


def _read_record(path: Path) -> dict | None:
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None  # none yet, or damaged: hashed again as at a first preparation
    return record if isinstance(record, dict) and isinstance(record.get("files"), dict) else None


def _changed(task: str, what: str) -> DataError:
    return DataError(f"task {task!r}: {what} since the data was prepared; {PREPARE_AGAIN}")


def identify_files(
    paths: Sequence[Path], book: IdentityBook | None, task: str, role: str, patterns: Sequence[str],
    hasher: Hasher = sha256_only,
) -> list[tuple[str, dict]]:
    """(sha256, facts) of each file, in order: from its record where its stamp still matches, hashed otherwise.

    Without a book (a corpus built outside a data cache) every file is hashed. A refused change raises DataError
    naming the file; `--verify` (on_change="verify") hashes every file and refuses any that differs from its record.
    """
    if book is None:
        return [hasher(path) for path in paths]
    where = record_path(book, task, role, patterns)
    record = _read_record(where)
    entries = record["files"] if record is not None else {}
    names = [str(path) for path in paths]
    if book.on_change == "verify" and record is None:
        raise DataError(f"task {task!r}: its {role} files were never prepared in this data cache (no record "
                        f"{where}); run `python -m mer.data.prepare` with the same data options first")
    if record is not None and book.on_change in ("refuse", "verify"):
        removed = sorted(set(entries) - set(names))
        added = sorted(set(names) - set(entries))
        if removed:
            raise _changed(task, f"{role} file {removed[0]} was removed" + (f" (and {len(removed) - 1} more)"
                                                                           if len(removed) > 1 else ""))
        if added:
            raise _changed(task, f"{role} file {added[0]} was added" + (f" (and {len(added) - 1} more)"
                                                                       if len(added) > 1 else ""))
    results, fresh, dirty = [], {}, record is None
    for path, name in zip(paths, names, strict=True):
        stamp = file_stamp(path)
        entry = entries.get(name)
        if book.on_change != "verify" and isinstance(entry, dict) and entry.get("stamp") == stamp:
            digest, facts = entry["sha256"], entry.get("facts", {})
        else:
            digest, facts = hasher(path)
            book.hashed.append((task, path, stamp["size"]))
            if isinstance(entry, dict) and entry.get("sha256") != digest and book.on_change in ("refuse", "verify"):
                raise _changed(task, f"{role} file {path} changed (its bytes differ from those hashed then)")
            stamp = file_stamp(path)  # after the read: what the hash describes
        racy = time.time_ns() - max(stamp["mtime_ns"], stamp["ctime_ns"]) <= RACY_NS
        fresh[name] = {"sha256": digest, "facts": facts, "stamp": None if racy else stamp}
        dirty = dirty or fresh[name] != entry
        results.append((digest, facts))
    if dirty or set(fresh) != set(entries):
        try:
            book.directory.mkdir(parents=True, exist_ok=True)
            write_text(where, json.dumps({"task": task, "role": role, "patterns": list(patterns), "files": fresh},
                                         indent=1))
        except OSError:
            pass  # a read-only shared cache: the files are hashed again at the next start, nothing worse
    return results


def combined_hash(paths: Sequence[Path], digests: Sequence[str]) -> str:
    """One sha256 over the files' names and content hashes, in order: a set of files' identity."""
    digest = hashlib.sha256()
    for path, file_digest in zip(paths, digests, strict=True):
        digest.update(f"{path}\0{file_digest}\n".encode())
    return digest.hexdigest()
