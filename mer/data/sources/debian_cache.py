"""The cached text of the Debian source: its fingerprints, its train/validation split, reading it back.

A language's text is kept in `<cache_dir>/text/<lang>-<fingerprint>.jsonl`, one JSON line per
document with its split bucket, and described by a `.meta.json` written last. The fingerprint
hashes the package versions and the rule (`text_rule`), so that a new version or a changed rule builds a
new file while an unchanged one is read back; the bucket hashes the package and path only, so that
a document stays on its side of the split across package versions and machines.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from mer.data.corpus import TaskCorpus
from mer.data.sources.debian_extract import EXTRACTOR_VERSION

if TYPE_CHECKING:
    from mer.data.sources.debian_config import DebianDocsConfig


def bucket(doc_id: str) -> int:
    """0..9999 from a hash of the document's package + path: the split never depends on versions."""
    return int(hashlib.sha256(doc_id.encode("utf-8")).hexdigest()[:8], 16) % 10_000


def text_rule(cfg: DebianDocsConfig) -> dict:
    """Everything besides the packages that changes the text: part of the fingerprint."""
    return {
        "extractor_version": EXTRACTOR_VERSION,
        "min_paragraph_chars": cfg.min_paragraph_chars,
        "language_check": cfg.language_check,
        "min_script_share": cfg.min_script_share,
        "val_percent": cfg.val_percent,
        "split": "sha256(package/path)[:8] % 10000 < 100*val_percent",
    }


def config_hash(obj: object) -> str:
    """sha256 of `obj` as canonical JSON: the same configuration gives the same key on every machine."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, ensure_ascii=False).encode("utf-8")).hexdigest()


def find_cached(text_dir: Path, language: str, config_key: str) -> dict | None:
    """The newest complete cache of this language and configuration (any package versions)."""
    best = None
    for meta_path in sorted(text_dir.glob(f"{language}-*.meta.json")):
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if meta.get("config_key") == config_key and (text_dir / meta["text_file"]).is_file():
            if best is None or meta_path.stat().st_mtime > best[0]:
                best = (meta_path.stat().st_mtime, meta)
    return best[1] if best else None


def corpus_from_meta(meta: dict, text_dir: Path, task_name: str) -> TaskCorpus:
    """The corpus that a complete cache (its meta record) describes; documents are read lazily from its file."""
    text_path = text_dir / meta["text_file"]
    threshold = int(meta["val_threshold"])

    def documents(val: bool) -> Iterator[str]:
        with open(text_path, encoding="utf-8") as f:
            for line in f:
                doc = json.loads(line)
                if (doc["bucket"] < threshold) == val:
                    yield doc["text"]

    packages = ", ".join(f"{p['package']} {p['version']}" for p in meta["packages"])
    t = meta["totals"]
    return TaskCorpus(
        name=task_name,
        language=meta["language"],
        description=(
            f"Debian documentation ({meta['language']}): {packages}; {t['train_documents']} train / "
            f"{t['val_documents']} val documents, {t['paragraphs']} paragraphs, {t['chars']} characters"
        ),
        fingerprint=meta["fingerprint"],
        train_documents=lambda: documents(False),
        val_documents=lambda: documents(True),
    )
