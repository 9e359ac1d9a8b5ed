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
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from filelock import FileLock

from mer.data.corpus import DataError, TaskCorpus
from mer.data.sources.debian_extract import (
    EXTRACTOR_VERSION,
    decode_html,
    decode_man,
    html_paragraphs,
    language_ok,
    man_paragraphs,
    normalize_for_dedup,
    text_width,
)
from mer.files.atomic import publish_file, write_text

log = logging.getLogger(__name__)

SUPPORTED_LANGUAGES = ("en", "fr", "de", "es", "it", "ru", "ja", "zh", "ar")
"""Languages with default packages and a language check."""

# Where each language sits inside the packages that hold several languages.
_HANDBOOK_DIRS = {"en": "en-US", "fr": "fr-FR", "de": "de-DE", "es": "es-ES", "it": "it-IT",
                  "ru": "ru-RU", "ja": "ja-JP", "zh": "zh-CN", "ar": "ar-MA"}
_INSTALL_GUIDE_DIRS = {"en": "en", "fr": "fr", "de": "de", "es": "es", "it": "it", "ru": "ru",
                       "ja": "ja", "zh": "zh_CN"}
_INSTALL_GUIDE = "installation-guide-amd64"  # Architecture: all; the amd64 text is the most complete

# Default packages per language, smallest and most prose-like first (max_packages keeps a prefix).
# Found with `apt-cache search` on Debian 12 (bookworm); languages missing from a family have no
# translation there (no debian-reference-ru, no Arabic man pages, help or installation guide).
DEFAULT_PACKAGES: dict[str, tuple[str, ...]] = {
    "en": ("debian-reference-en", "manpages", "debian-handbook", _INSTALL_GUIDE,
           "libreoffice-help-en-us", "gimp-help-en", "manpages-dev"),
    "fr": ("debian-reference-fr", "manpages-fr", "debian-handbook", _INSTALL_GUIDE,
           "libreoffice-help-fr", "gimp-help-fr", "manpages-fr-dev"),
    "de": ("debian-reference-de", "manpages-de", "debian-handbook", _INSTALL_GUIDE,
           "libreoffice-help-de", "gimp-help-de", "manpages-de-dev"),
    "es": ("debian-reference-es", "manpages-es", "debian-handbook", _INSTALL_GUIDE,
           "libreoffice-help-es", "gimp-help-es", "manpages-es-dev"),
    "it": ("debian-reference-it", "manpages-it", "debian-handbook", _INSTALL_GUIDE,
           "libreoffice-help-it", "gimp-help-it", "manpages-it-dev"),
    "ru": ("manpages-ru", "debian-handbook", _INSTALL_GUIDE, "libreoffice-help-ru",
           "gimp-help-ru", "manpages-ru-dev"),
    "ja": ("debian-reference-ja", "manpages-ja", "debian-handbook", _INSTALL_GUIDE,
           "libreoffice-help-ja", "gimp-help-ja", "manpages-ja-dev"),
    "zh": ("debian-reference-zh-cn", "manpages-zh", "debian-handbook", _INSTALL_GUIDE,
           "libreoffice-help-zh-cn", "gimp-help-zh-cn"),
    "ar": ("debian-handbook",),
}

_PACKAGE_NAME = re.compile(r"^[a-z0-9][a-z0-9+.-]+$")
_MAN_FILE = re.compile(r"\.[0-9][a-z0-9_]*(\.gz)?$")
_HTML_FILE = re.compile(r"\.(x?html?)(\.gz)?$")


def _default_cache_dir() -> str:
    return str(Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mer" / "debian")


@dataclass
class DebianDocsConfig:
    """Which Debian documentation to turn into text, and how."""

    languages: list[str] = field(default_factory=lambda: ["en", "fr", "de", "ar", "ja"])
    """Languages built by `build_debian_corpora` and the command line; each one of SUPPORTED_LANGUAGES."""
    packages: dict[str, list[str]] = field(default_factory=dict)
    """Per-language override of DEFAULT_PACKAGES, e.g. {"fr": ["debian-reference-fr", "maint-guide-fr"]}.
    An entry is a package name, or "name:path/inside/package/" to read only that folder; known
    multi-language packages (debian-handbook, installation-guide-*) get the language's folder."""
    cache_dir: str | None = None
    """Folder of downloaded .deb files and extracted text; None: $XDG_CACHE_HOME/mer/debian (~/.cache/mer/debian)."""
    val_percent: int = 5
    """Percent of source files (documents) held out for validation, chosen by a hash of package + path; 1..50."""
    min_paragraph_chars: int = 50
    """Shorter paragraphs (headings, option names, menu paths) are dropped; CJK characters count twice."""
    max_packages: int | None = None
    """Use at most this many of the language's packages (the first ones of the list); None: all."""
    language_check: bool = True
    """Drop paragraphs that are not in the expected language (script share + function words)."""
    min_script_share: float = 0.5
    """Language check: least share of a paragraph's letters in the language's script, in (0, 1]."""
    min_total_chars: int = 20_000
    """A language whose kept text is shorter than this is an error (nothing usable was extracted)."""
    keep_debs: bool = True
    """Keep downloaded .deb files in <cache_dir>/debs so that a rule change re-extracts without downloading."""

    def __post_init__(self) -> None:
        supported = ", ".join(SUPPORTED_LANGUAGES)
        if isinstance(self.languages, str):
            raise ValueError(f"languages must be a list such as ['fr', 'de'], not the string {self.languages!r}")
        for lang in list(self.languages) + list(self.packages):
            if lang not in SUPPORTED_LANGUAGES:
                raise ValueError(
                    f"languages/packages: unknown language {lang!r}; supported: {supported} "
                    "(for another language use the user-corpus source, source: files)"
                )
        if len(set(self.languages)) != len(self.languages):
            raise ValueError(f"languages: {list(self.languages)} lists a language twice; list each once")
        for lang, specs in self.packages.items():
            if isinstance(specs, str) or not specs:
                raise ValueError(f"packages[{lang!r}]: give a non-empty list of package names, got {specs!r}")
            for spec in specs:
                name = str(spec).split(":", 1)[0]
                if not _PACKAGE_NAME.match(name):
                    raise ValueError(
                        f"packages[{lang!r}]: {spec!r} is not a Debian package name "
                        "(lowercase letters, digits, + - .; optionally ':path/inside/package/')"
                    )
        if not isinstance(self.val_percent, int) or not 1 <= self.val_percent <= 50:
            raise ValueError(f"val_percent: must be an integer from 1 to 50, got {self.val_percent!r}")
        if not isinstance(self.min_paragraph_chars, int) or self.min_paragraph_chars < 1:
            raise ValueError(f"min_paragraph_chars: must be a positive integer, got {self.min_paragraph_chars!r}")
        if self.max_packages is not None and (not isinstance(self.max_packages, int) or self.max_packages < 1):
            raise ValueError(f"max_packages: must be a positive integer or None (all), got {self.max_packages!r}")
        if not 0 < self.min_script_share <= 1:
            raise ValueError(f"min_script_share: must be in (0, 1], got {self.min_script_share!r}")
        if not isinstance(self.min_total_chars, int) or self.min_total_chars < 0:
            raise ValueError(f"min_total_chars: must be a non-negative integer, got {self.min_total_chars!r}")

    def resolved_cache_dir(self) -> Path:
        """The cache folder, with ~ expanded and the default filled in."""
        return Path(self.cache_dir or _default_cache_dir()).expanduser()


@dataclass(frozen=True)
class PackageSource:
    """One package and the folder inside it that holds the language's documents."""

    package: str
    prefix: str
    """Path inside the package ("usr/share/man/"); "" reads the whole package."""


def _known_prefix(package: str, language: str) -> str:
    """The folder of `language` inside a known documentation package ("" when not known)."""
    if package == "debian-handbook":
        return f"usr/share/doc/debian-handbook/html/{_HANDBOOK_DIRS[language]}/"
    if package.startswith("installation-guide-"):
        if language not in _INSTALL_GUIDE_DIRS:
            raise DataError(f"debian[{language}]: {package} has no {language} translation; remove it from packages")
        return f"usr/share/doc/{package}/{_INSTALL_GUIDE_DIRS[language]}/"
    if package == "manpages-zh":
        return "usr/share/man/zh_CN/"  # zh_TW (traditional) is left out: one script per task
    if package.startswith("manpages"):
        return "usr/share/man/"
    if package.startswith("debian-reference-"):
        return "usr/share/debian-reference/"
    if package.startswith("libreoffice-help-"):
        return "usr/share/libreoffice/help/"
    if package.startswith("gimp-help-"):
        return "usr/share/gimp/2.0/help/"
    return ""


def package_sources(language: str, cfg: DebianDocsConfig) -> list[PackageSource]:
    """The packages (and folders inside them) read for `language`, in order, before max_packages."""
    if language not in SUPPORTED_LANGUAGES:
        raise DataError(
            f"debian: unknown language {language!r}; supported: {', '.join(SUPPORTED_LANGUAGES)} "
            "(for another language use the user-corpus source, source: files)"
        )
    specs = cfg.packages.get(language) or list(DEFAULT_PACKAGES[language])
    sources = []
    for spec in specs:
        name, sep, prefix = str(spec).partition(":")
        if sep:
            prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        else:
            prefix = _known_prefix(name, language)
        sources.append(PackageSource(name, prefix))
    return sources


# ---------------------------------------------------------------------------------------------
# apt / dpkg
# ---------------------------------------------------------------------------------------------

_TOOLS = ("apt-get", "apt-cache", "dpkg-deb")


def _apt_available() -> bool:
    return all(shutil.which(t) for t in _TOOLS)


def _apt_missing_error(language: str) -> DataError:
    missing = [t for t in _TOOLS if not shutil.which(t)] or ["apt-get"]
    return DataError(
        f"debian[{language}]: this builder needs Debian's apt tools ({', '.join(missing)} not found on PATH) "
        "to download documentation packages, and there is no cached text for this configuration. "
        "Run it once on a Debian/Ubuntu machine with the same cache_dir and copy the cache, "
        "or use the user-corpus source (source: files in data.tasks) with your own text files instead."
    )


class _DownloadError(DataError):
    """apt-get download failed (network, archive changed): an older cache of the same configuration may do."""


def _candidate_versions(packages: list[str]) -> dict[str, str | None]:
    """Version apt would download of each package; None when the archive has no such (real) package.

    One `apt-cache policy` call for all of them (each apt call spends ~0.4 s loading its cache).
    """
    proc = subprocess.run(["apt-cache", "policy", *packages], capture_output=True, text=True, check=False,
                          env={**os.environ, "LC_ALL": "C"})
    found: dict[str, str | None] = {}
    current = None
    for line in proc.stdout.splitlines():
        if line and not line[0].isspace() and line.endswith(":"):
            current = line[:-1].split(":", 1)[0]  # "name:" or "name:arch:"
        elif current is not None and line.strip().startswith("Candidate:"):
            version = line.split(":", 1)[1].strip()
            found[current] = None if version == "(none)" else version
            current = None
    return {p: found.get(p) for p in packages}


def _deb_path(debs_dir: Path, package: str, version: str) -> Path:
    return debs_dir / f"{package}_{version.replace(':', '%3a')}_all.deb"


def _apt_get_download(package: str, version: str, debs_dir: Path) -> Path:
    """Download `package=version` into `debs_dir` (nothing installed) and return the .deb's path."""
    debs_dir.mkdir(parents=True, exist_ok=True)
    target = _deb_path(debs_dir, package, version)
    with tempfile.TemporaryDirectory(dir=debs_dir, prefix=".download-") as tmp:
        cmd = ["apt-get", "download", "-q", f"{package}={version}"]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            # As root apt drops to the _apt user, who cannot write into our folder: it warns, then
            # downloads as root anyway. Say so up front instead of printing a warning every time.
            cmd[1:1] = ["-o", "APT::Sandbox::User=root"]
        log.info("debian: downloading %s %s", package, version)
        proc = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True, check=False)
        debs = sorted(Path(tmp).glob("*.deb"))
        if proc.returncode != 0 or len(debs) != 1:
            raise _DownloadError(
                f"debian: `{' '.join(cmd)}` failed (exit {proc.returncode}): "
                f"{(proc.stderr or proc.stdout).strip()[-800:]}\n"
                "Check the network access to the Debian archive and run `apt-get update`."
            )
        publish_file(debs[0], target)
    return target


def _deb_files(deb: Path, prefix: str) -> list[tuple[str, bytes, str]]:
    """(path inside the package, bytes, "html" | "man") of the pages under `prefix`, sorted by path.

    Streams `dpkg-deb --fsys-tarfile` (the package's file tree, as `dpkg-deb -x` would write it)
    and keeps only the pages: nothing is written to disk, and the images that make up most of the
    help packages are never stored. Symbolic links (aliases of other pages) are left out.
    """
    proc = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    files = []
    try:
        with tarfile.open(fileobj=proc.stdout, mode="r|") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                rel = member.name.removeprefix("./")
                if not rel.startswith(prefix):
                    continue
                name = rel.rsplit("/", 1)[-1]
                if _HTML_FILE.search(name):
                    kind = "html"
                elif "/man/" in f"/{rel}" and _MAN_FILE.search(name):
                    kind = "man"
                else:
                    continue
                f = tar.extractfile(member)
                if f is not None:
                    files.append((rel, f.read(), kind))
    except tarfile.TarError as e:
        proc.kill()
        proc.wait()
        raise DataError(f"debian: cannot read {deb} ({e}); delete that file so that it is downloaded again") from e
    finally:
        stderr = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
        rc = proc.wait()
    if rc != 0:
        raise DataError(
            f"debian: `dpkg-deb --fsys-tarfile {deb}` failed: {stderr.strip()[-800:]}; "
            "delete that file so that it is downloaded again"
        )
    return sorted(files)


# ---------------------------------------------------------------------------------------------
# Building one language
# ---------------------------------------------------------------------------------------------


def _bucket(doc_id: str) -> int:
    """0..9999 from a hash of the document's package + path: the split never depends on versions."""
    return int(hashlib.sha256(doc_id.encode("utf-8")).hexdigest()[:8], 16) % 10_000


def _rule(cfg: DebianDocsConfig) -> dict:
    """Everything besides the packages that changes the text: part of the fingerprint."""
    return {
        "extractor_version": EXTRACTOR_VERSION,
        "min_paragraph_chars": cfg.min_paragraph_chars,
        "language_check": cfg.language_check,
        "min_script_share": cfg.min_script_share,
        "val_percent": cfg.val_percent,
        "split": "sha256(package/path)[:8] % 10000 < 100*val_percent",
    }


def _hash(obj: object) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, ensure_ascii=False).encode("utf-8")).hexdigest()


def _find_cached(text_dir: Path, language: str, config_key: str) -> dict | None:
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


def _corpus_from_meta(meta: dict, text_dir: Path, task_name: str) -> TaskCorpus:
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


def filter_paragraphs(paragraphs: list[str], language: str, cfg: DebianDocsConfig, seen: set[bytes],
                      stats: dict[str, int] | None = None) -> list[str]:
    """The paragraphs kept: long enough, in `language`, not seen before (`seen` is updated).

    `stats`, when given, counts the dropped ones under "short", "wrong_language" and "duplicate".
    """
    stats = stats if stats is not None else {}
    kept = []
    for p in paragraphs:
        if text_width(p) < cfg.min_paragraph_chars:
            reason = "short"
        elif cfg.language_check and not language_ok(p, language, cfg.min_script_share):
            reason = "wrong_language"
        else:
            key = hashlib.blake2b(normalize_for_dedup(p).encode("utf-8"), digest_size=16).digest()
            if key not in seen:
                seen.add(key)
                kept.append(p)
                continue
            reason = "duplicate"
        stats[reason] = stats.get(reason, 0) + 1
    return kept


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
        "rule": _rule(cfg),
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
    config_key = _hash({"language": language, "sources": [asdict(s) for s in sources],
                        "max_packages": cfg.max_packages, "rule": _rule(cfg)})
    if not _apt_available():
        meta = _find_cached(text_dir, language, config_key) if text_dir.is_dir() else None
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
    fingerprint = _hash({"language": language, "rule": _rule(cfg),
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
            older = _find_cached(text_dir, language, config_key) if text_dir.is_dir() else None
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
    return _corpus_from_meta(meta, cfg.resolved_cache_dir() / "text", task_name or language)


def build_debian_corpora(cfg: DebianDocsConfig) -> dict[str, TaskCorpus]:
    """`build_debian_corpus` for every language of cfg.languages, in order."""
    return {lang: build_debian_corpus(lang, cfg) for lang in cfg.languages}


def _parse_package_overrides(items: list[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for item in items:
        lang, sep, names = item.partition("=")
        if not sep or not names:
            raise SystemExit(f"--packages expects LANG=PKG[,PKG...], got {item!r}")
        out.setdefault(lang, []).extend(n for n in names.split(",") if n)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mer.data.sources.debian",
        description="Build (or read back from the cache) the Debian documentation corpus of some "
        "languages and print documents, paragraphs and characters per language.",
    )
    defaults = DebianDocsConfig()
    parser.add_argument("--languages", nargs="+", default=defaults.languages,
                        help=f"languages among {' '.join(SUPPORTED_LANGUAGES)} (default: %(default)s)")
    parser.add_argument("--cache-dir", default=None, help=f"cache folder (default: {_default_cache_dir()})")
    parser.add_argument("--packages", action="append", default=[], metavar="LANG=PKG[,PKG...]",
                        help="replace a language's default packages (repeatable)")
    parser.add_argument("--max-packages", type=int, default=None, help="use the first N packages per language")
    parser.add_argument("--val-percent", type=int, default=defaults.val_percent)
    parser.add_argument("--min-paragraph-chars", type=int, default=defaults.min_paragraph_chars)
    parser.add_argument("--min-total-chars", type=int, default=defaults.min_total_chars)
    parser.add_argument("--list-packages", action="store_true",
                        help="print the packages each language would use and exit (no download)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log downloads and skipped packages")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    try:
        cfg = DebianDocsConfig(
            languages=list(args.languages), packages=_parse_package_overrides(args.packages),
            cache_dir=args.cache_dir, val_percent=args.val_percent,
            min_paragraph_chars=args.min_paragraph_chars, max_packages=args.max_packages,
            min_total_chars=args.min_total_chars,
        )
    except ValueError as e:
        parser.error(str(e))
    if args.list_packages:
        for lang in cfg.languages:
            names = [s.package + (f":{s.prefix}" if s.prefix else "") for s in package_sources(lang, cfg)]
            print(f"{lang}: {' '.join(names)}")
        return 0
    print(f"{'lang':<5} {'package':<28} {'version':<24} {'docs':>6} {'paragraphs':>10} {'chars':>11}"
          f" {'short':>7} {'wrong-lang':>10} {'dup':>7}")
    status = 0
    for lang in cfg.languages:
        try:
            meta = _build_meta(lang, cfg)
        except DataError as e:
            print(f"{lang:<5} ERROR: {e}", file=sys.stderr)
            status = 1
            continue
        for p in meta["packages"]:
            print(f"{lang:<5} {p['package']:<28} {p['version']:<24} {p['documents']:>6} {p['paragraphs']:>10} "
                  f"{p['chars']:>11} {p['short']:>7} {p['wrong_language']:>10} {p['duplicate']:>7}")
        t = meta["totals"]
        print(f"{lang:<5} {'TOTAL (train/val docs: ' + str(t['train_documents']) + '/' + str(t['val_documents']) + ')':<53}"
              f" {t['documents']:>6} {t['paragraphs']:>10} {t['chars']:>11} {t['short']:>7} "
              f"{t['wrong_language']:>10} {t['duplicate']:>7}")
        print(f"{lang:<5} text: {cfg.resolved_cache_dir() / 'text' / meta['text_file']}")
    return status


if __name__ == "__main__":
    raise SystemExit(main())
