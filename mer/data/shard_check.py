"""Token shards verified before training: their sha256 against the manifest, and every token id below the
vocabulary size (docs/run_directory.md, "What is verified when").

Hashing a 200 GB shard at every start would cost minutes, so a verified file gets a stamp in
`verified.json` beside its manifest: its size, mtime, ctime and inode when it was verified. A file whose
identity still matches its stamp is not read again; any write to it (even at the same size, even with
its mtime set back, since that changes the ctime) makes it hashed again. A file changed within the last
two seconds is not stamped (a write in the same clock tick would leave its times unchanged: git's
"racy" case), so it is hashed once more at the next start. A read-only cache just goes unstamped.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shlex
import time
from pathlib import Path

import numpy as np

from mer.data.corpus import DataError
from mer.files.atomic import write_text
from mer.files.hashing import CHUNK_BYTES

log = logging.getLogger(__name__)

STAMP_FILE = "verified.json"
RACY_NS = 2_000_000_000


def rebuild_hint(directory: Path, manifest: dict | None) -> str:
    """The fix for a damaged shard folder: delete it; the next preparation rebuilds it from its source."""
    if manifest is not None and "files" in manifest:  # the user's pre-tokenized files: only the folder is ours
        return (f"restore the token files, or point the task's train_files/val_files at the right ones; then delete "
                f"the registration folder (`rm -r {shlex.quote(str(directory))}`) and run the same command again")
    return (f"delete the folder, it is rebuilt from the text: `rm -r {shlex.quote(str(directory))}`, then run the "
            "same command again (or `python -m mer.data.prepare` with the same data options)")


def _identity(path: Path) -> dict[str, int]:
    st = path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "ctime_ns": st.st_ctime_ns, "inode": st.st_ino}


def scan_tokens(path: Path, dtype: np.dtype) -> tuple[str, int]:
    """(sha256 of the file's bytes, largest token id in it), in one pass of CHUNK_BYTES reads."""
    digest, largest = hashlib.sha256(), -1
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK_BYTES):
            digest.update(chunk)
            tokens = np.frombuffer(chunk, dtype=dtype)  # whole tokens: CHUNK_BYTES is a multiple of the size
            if tokens.size:
                largest = max(largest, int(tokens.max()))
    return digest.hexdigest(), largest


def _read_stamps(path: Path) -> dict:
    try:
        stamps = json.loads(path.read_text())
        return stamps if isinstance(stamps, dict) else {}
    except (OSError, ValueError):
        return {}  # none yet, or damaged: everything is verified again


def verify_shard_files(directory: Path, manifest: dict, entries: dict[str, tuple[Path, str | None]],
                       dtype: np.dtype) -> None:
    """Refuse a shard whose bytes differ from the manifest's sha256 or that holds a token id >= the manifest's
    vocabulary size, naming the file and the fix; stamp the files that pass. `entries`: stamp key -> (the shard's
    path, its sha256 in the manifest, None for the user's pre-tokenized files registered in place)."""
    vocab = manifest.get("vocab_size")
    stamp_path = directory / STAMP_FILE
    stamps = _read_stamps(stamp_path)
    fresh = {}
    for key, (path, expected) in entries.items():
        identity = _identity(path)
        stamp = stamps.get(key)
        if isinstance(stamp, dict) and stamp.get("identity") == identity and stamp.get("sha256") == expected:
            largest = int(stamp["max_token_id"])
        else:
            digest, largest = scan_tokens(path, dtype)
            if expected is not None and digest != expected:
                raise DataError(f"token shard {path} does not match {directory / 'manifest.json'}: its sha256 is "
                                f"{digest[:16]}..., the manifest recorded {expected[:16]}... when it was prepared "
                                f"(the file was overwritten or damaged on disk, and would train on wrong tokens); "
                                f"{rebuild_hint(directory, manifest)}")
        if vocab is not None and largest >= int(vocab):
            raise DataError(f"token shard {path} holds token id {largest}, but the tokenizer it was made with has "
                            f"{vocab} tokens (manifest {directory / 'manifest.json'}): the file is damaged; "
                            f"{rebuild_hint(directory, manifest)}")
        if time.time_ns() - max(identity["mtime_ns"], identity["ctime_ns"]) > RACY_NS:
            fresh[key] = {"identity": identity, "sha256": expected, "max_token_id": largest}
    if fresh != stamps:  # stamps of files changed since (or not stamped now) are dropped, never kept stale
        try:
            if fresh:
                write_text(stamp_path, json.dumps(fresh, indent=2))
            else:
                stamp_path.unlink(missing_ok=True)
        except OSError as error:  # a read-only shared cache: verified again next time, nothing worse
            log.debug("cannot write %s (%s); the shards will be hashed again at the next start", stamp_path, error)
