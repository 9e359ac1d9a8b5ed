"""Debian documentation corpus: modern technical prose in en, fr, de, es, it, ru, ja, zh (and a little ar).

For one language, the translated documentation packages of the Debian archive (Debian Reference,
manual pages, the Debian Administrator's Handbook, the installation guide, LibreOffice and GIMP
help) are fetched with `apt-get download` (nothing is installed), their file trees read with
`dpkg-deb --fsys-tarfile` (what `dpkg-deb -x` unpacks, streamed: only the pages are kept, in
memory), and turned into text:

1. HTML pages and man pages -> paragraphs (`debian_extract`);
2. paragraphs shorter than `min_paragraph_chars` or not in the expected language are dropped
   (untranslated English inside a French package, option lists, command lines);
3. exact duplicates (after normalisation) are dropped, the first occurrence kept;
4. a document is the paragraphs kept from one source file, joined by blank lines;
5. a document goes to validation when a hash of its package name and path falls under
   `val_percent` (stable across package versions and machines).

The text is cached per language in `<cache_dir>/text/<lang>-<fingerprint>.jsonl` (written under a
temporary name and renamed; its `.meta.json`, written last, marks it complete). The fingerprint
hashes the package names, versions and paths and the extraction rule, so a new package version in
the archive or a changed rule builds a new file, and an unchanged one is read back without any
download. Downloaded `.deb` files are kept in `<cache_dir>/debs/` unless `keep_debs` is off.

    python -m mer.data.sources.debian --languages fr de --cache-dir DIR

builds the corpora and prints paragraphs and characters per language (see docs/data_debian.md).

This module is the entry point and the build of one language (steps above, cache or download);
each part has its own module: `debian_config` (the configuration), `debian_packages` (which
packages), `debian_apt` (apt and dpkg), `debian_extract` (pages -> paragraphs), `debian_filter`
(steps 2-3), `debian_cache` (fingerprints, split, reading a cache back), `debian_cli` (options, table).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
from dataclasses import asdict
from pathlib import Path

from filelock import FileLock

from mer.data.corpus import DataError, TaskCorpus
from mer.data.sources import debian_apt
from mer.data.sources.debian_cache import bucket as _bucket
from mer.data.sources.debian_cache import config_hash, corpus_from_meta, find_cached, text_rule
from mer.data.sources.debian_cli import (
    parse_command_line,
    print_language_counts,
    print_package_lists,
    print_table_header,
)
from mer.data.sources.debian_config import DebianDocsConfig
from mer.data.sources.debian_extract import decode_html, decode_man, html_paragraphs, man_paragraphs
from mer.data.sources.debian_filter import filter_paragraphs
from mer.data.sources.debian_packages import DEFAULT_PACKAGES, SUPPORTED_LANGUAGES, PackageSource, package_sources
from mer.files.atomic import publish_file, write_text

__all__ = [
    "DEFAULT_PACKAGES",
    "SUPPORTED_LANGUAGES",
    "DebianDocsConfig",
    "PackageSource",
    "build_debian_corpora",
    "build_debian_corpus",
    "filter_paragraphs",
    "main",
    "package_sources",
]

log = logging.getLogger(__name__)

# The apt and dpkg calls, looked up in this module when a build runs, so that tests stand in for
# apt and the archive with monkeypatch.setattr(debian, "_apt_get_download", ...).
_candidate_versions = debian_apt.candidate_versions
_apt_get_download = debian_apt.apt_get_download
_deb_files = debian_apt.deb_files
_deb_path = debian_apt.deb_path
_DownloadError = debian_apt.DownloadError


def _apt_available() -> bool:
    """Whether apt-get, apt-cache and dpkg-deb are on PATH (if not, only cached text can be used)."""
    return all(shutil.which(t) for t in debian_apt.APT_TOOLS)


def _apt_missing_error(language: str) -> DataError:
    """Why nothing can be built here: no apt, and no cache of this configuration to fall back on."""
    missing = [t for t in debian_apt.APT_TOOLS if not shutil.which(t)] or ["apt-get"]
    return DataError(
        f"debian[{language}]: this builder needs Debian's apt tools ({', '.join(missing)} not found on PATH) "
        "to download documentation packages, and there is no cached text for this configuration. "
        "Run it once on a Debian/Ubuntu machine with the same cache_dir and copy the cache, "
        "or use the user-corpus source (source: files in data.tasks) with your own text files instead."
    )


def _write_documents(path: Path, language: str, sources: list[tuple[PackageSource, str]],
                     cfg: DebianDocsConfig, debs_dir: Path, seen: set[bytes], buckets: list[int],
                     per_package: list[dict]) -> None:
    """Write one JSON line per document of every package; fills `buckets` and `per_package`."""
    with open(path, "w", encoding="utf-8") as out:
        for src, version in sources:
            deb = _deb_path(debs_dir, src.package, version)
            if not deb.is_file():
                deb = _apt_get_download(src.package, version, debs_dir)
            stats = {"package": src.package, "version": version, "prefix": src.prefix, "files": 0,
                     "documents": 0, "paragraphs": 0, "chars": 0, "short": 0, "wrong_language": 0,
                     "duplicate": 0}
            for rel, raw, kind in _deb_files(deb, src.prefix):
                stats["files"] += 1
                if kind == "html":
                    paragraphs = html_paragraphs(decode_html(raw))
                else:
                    paragraphs = man_paragraphs(decode_man(raw))
                kept = filter_paragraphs(paragraphs, language, cfg, seen, stats)
                if not kept:
                    continue
                doc_id = f"{src.package}/{rel}"
                bucket = _bucket(doc_id)
                text = "\n\n".join(kept)
                out.write(json.dumps({"id": doc_id, "bucket": bucket, "text": text}, ensure_ascii=False) + "\n")
                buckets.append(bucket)
                stats["documents"] += 1
                stats["paragraphs"] += len(kept)
                stats["chars"] += len(text)
            if not cfg.keep_debs:
                deb.unlink(missing_ok=True)
            if stats["files"] == 0:
                log.warning("debian[%s]: %s %s has no HTML or man page under %r", language, src.package,
                            version, src.prefix or "/")
            per_package.append(stats)


def _build(language: str, sources: list[tuple[PackageSource, str]], cfg: DebianDocsConfig,
           fingerprint: str, config_key: str, cache: Path) -> dict:
    """Download, extract, filter and write the text of one language; returns its meta record."""
    debs_dir, text_dir = cache / "debs", cache / "text"
    for d in (debs_dir, text_dir):
        d.mkdir(parents=True, exist_ok=True)
    text_name = f"{language}-{fingerprint[:16]}.jsonl"
    tmp_text = text_dir / f".{text_name}.{os.getpid()}.tmp"
    seen: set[bytes] = set()
    buckets: list[int] = []
    per_package = []
    try:
        _write_documents(tmp_text, language, sources, cfg, debs_dir, seen, buckets, per_package)
    except BaseException:
        tmp_text.unlink(missing_ok=True)
        raise
    totals = {k: sum(p[k] for p in per_package) for k in ("files", "paragraphs", "chars", "short",
                                                           "wrong_language", "duplicate")}
    names = ", ".join(s.package for s, _ in sources)
    if totals["chars"] < cfg.min_total_chars or len(buckets) < 2:
        tmp_text.unlink(missing_ok=True)
        raise DataError(
            f"debian[{language}]: extraction produced too little text ({totals['chars']} characters in "
            f"{len(buckets)} documents from {names}; min_total_chars={cfg.min_total_chars}, at least 2 documents). "
            f"Dropped paragraphs: {totals['short']} too short, {totals['wrong_language']} not in {language!r}, "
            f"{totals['duplicate']} duplicates. Add packages (packages[{language!r}]), raise max_packages, "
            "or lower min_paragraph_chars / min_total_chars."
        )
    # Validation: documents with bucket < threshold. If the rule puts none (or all) of a small
    # corpus there, move the threshold to the nearest bucket so both sides are non-empty.
    threshold = 100 * cfg.val_percent
    if not any(b < threshold for b in buckets):
        threshold = min(buckets) + 1
    if all(b < threshold for b in buckets):
        threshold = max(buckets)
    n_val = sum(b < threshold for b in buckets)
    if n_val == 0:
        tmp_text.unlink(missing_ok=True)
        raise DataError(f"debian[{language}]: all {len(buckets)} documents hash alike; add packages")
    totals.update(documents=len(buckets), val_documents=n_val, train_documents=len(buckets) - n_val)
    publish_file(tmp_text, text_dir / text_name)
    meta = {
        "language": language,
        "fingerprint": fingerprint,
        "config_key": config_key,
        "text_file": text_name,
        "val_threshold": threshold,
        "rule": text_rule(cfg),
        "packages": per_package,
        "totals": totals,
    }
    write_text(text_dir / f"{language}-{fingerprint[:16]}.meta.json", json.dumps(meta, indent=1, ensure_ascii=False))
    return meta


def _build_meta(language: str, cfg: DebianDocsConfig) -> dict:
    """The cache record of `language`: read back when complete, otherwise built (under a lock)."""
    cache = cfg.resolved_cache_dir()
    text_dir = cache / "text"
    sources = package_sources(language, cfg)
    config_key = config_hash({"language": language, "sources": [asdict(s) for s in sources],
                        "max_packages": cfg.max_packages, "rule": text_rule(cfg)})
    if not _apt_available():
        meta = find_cached(text_dir, language, config_key) if text_dir.is_dir() else None
        if meta is None:
            raise _apt_missing_error(language)
        log.warning("debian[%s]: apt not found; using the cached text %s without checking for newer "
                    "package versions", language, meta["text_file"])
        return meta

    resolved, missing = [], []
    versions = _candidate_versions(sorted({s.package for s in sources}))
    for src in sources:
        version = versions[src.package]
        if version is None:
            missing.append(src.package)
        else:
            resolved.append((src, version))
    if not resolved:
        raise DataError(
            f"debian[{language}]: none of the packages {', '.join(missing)} exists in the package archive "
            "known to apt. Check the names with `apt-cache search`, or run `apt-get update` if the "
            "package lists are empty."
        )
    for name in missing:
        log.warning("debian[%s]: package %s does not exist in the archive (apt-cache policy has no candidate); "
                    "skipping it", language, name)
    if cfg.max_packages is not None:
        resolved = resolved[: cfg.max_packages]
    fingerprint = config_hash({"language": language, "rule": text_rule(cfg),
                         "packages": [[s.package, v, s.prefix] for s, v in resolved]})
    meta_path = text_dir / f"{language}-{fingerprint[:16]}.meta.json"

    def cached() -> dict | None:
        if meta_path.is_file():
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            if meta.get("fingerprint") == fingerprint and (text_dir / meta["text_file"]).is_file():
                return meta
        return None

    if (meta := cached()) is not None:
        return meta
    cache.mkdir(parents=True, exist_ok=True)
    with FileLock(str(cache / f"{language}.lock")):
        if (meta := cached()) is not None:  # another process built it while we waited
            return meta
        try:
            return _build(language, resolved, cfg, fingerprint, config_key, cache)
        except _DownloadError as e:
            older = find_cached(text_dir, language, config_key) if text_dir.is_dir() else None
            if older is None:
                raise
            log.warning("debian[%s]: %s\nUsing the cached text of older package versions (%s) instead.",
                        language, e, older["text_file"])
            return older


def build_debian_corpus(language: str, cfg: DebianDocsConfig, task_name: str | None = None) -> TaskCorpus:
    """The Debian documentation corpus of one language (downloaded and extracted on first use, then cached).

    `language` is one of SUPPORTED_LANGUAGES (it need not be in cfg.languages); `task_name`
    defaults to the language code. Raises DataError when apt is missing and nothing is cached, when
    none of the language's packages exists, or when too little text comes out.
    """
    meta = _build_meta(language, cfg)
    return corpus_from_meta(meta, cfg.resolved_cache_dir() / "text", task_name or language)


def build_debian_corpora(cfg: DebianDocsConfig) -> dict[str, TaskCorpus]:
    """`build_debian_corpus` for every language of cfg.languages, in order."""
    return {lang: build_debian_corpus(lang, cfg) for lang in cfg.languages}


def main(argv: list[str] | None = None) -> int:
    """`python -m mer.data.sources.debian` (options in debian_cli): build or read back each language, print its counts.

    Returns 1 when a language failed (its error printed, the others still built), else 0.
    """
    args, cfg = parse_command_line(argv)
    if args.list_packages:
        print_package_lists(cfg)
        return 0
    print_table_header()
    status = 0
    for lang in cfg.languages:
        try:
            meta = _build_meta(lang, cfg)
        except DataError as e:
            print(f"{lang:<5} ERROR: {e}", file=sys.stderr)
            status = 1
            continue
        print_language_counts(lang, meta, cfg.resolved_cache_dir())
    return status


if __name__ == "__main__":
    raise SystemExit(main())
