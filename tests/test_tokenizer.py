"""Tokenizer: trained on every language, deterministic, cached, loadable by transformers."""

from __future__ import annotations

import pytest
from transformers import AutoTokenizer

from mer.data.config import TokenizerConfig
from mer.data.corpus import DataError
from mer.data.sources.bible import build_bible_corpus
from mer.data.tokenizer import check_coverage, prepare_tokenizer, train_bpe

LANGUAGES = ("en", "fr", "de", "ar", "ja")


def _corpora(languages=LANGUAGES, documents=30):
    return [build_bible_corpus(lang, lang, max_train_documents=documents) for lang in languages]


def test_round_trip_in_every_language(small_bible):
    cfg, prepared = small_bible
    tokenizer = AutoTokenizer.from_pretrained(str(cfg.data_dir) + f"/tokenizers/{prepared.tokenizer_hash}")
    for language in LANGUAGES:
        text = next(build_bible_corpus(language, language).val_documents())[:2000]
        ids = tokenizer.encode(text, add_special_tokens=False)
        assert tokenizer.decode(ids) == text
        assert len(text.encode()) / len(ids) > 1.5, f"{language} is barely compressed"


def test_training_is_deterministic(tmp_path):
    cfg = TokenizerConfig(vocab_size=400, train_chars_per_task=20_000)
    corpora = _corpora(documents=10)
    train_bpe(corpora, cfg, tmp_path / "a")
    train_bpe(corpora, cfg, tmp_path / "b")
    assert (tmp_path / "a" / "tokenizer.json").read_bytes() == (tmp_path / "b" / "tokenizer.json").read_bytes()


def test_cached_by_content_hash(tmp_path):
    cfg = TokenizerConfig(vocab_size=400, train_chars_per_task=20_000)
    corpora = _corpora(documents=10)
    first, digest = prepare_tokenizer(corpora, cfg, tmp_path)
    stamp = (tmp_path / "tokenizers" / digest / "tokenizer.json").stat().st_mtime_ns
    _, again = prepare_tokenizer(corpora, cfg, tmp_path)
    assert again == digest
    assert (tmp_path / "tokenizers" / digest / "tokenizer.json").stat().st_mtime_ns == stamp  # not retrained
    _, other = prepare_tokenizer(_corpora(documents=11), cfg, tmp_path)
    assert other != digest
    assert len(first) == 400 and first.eos_token == "<|endoftext|>"


def test_users_tokenizer_by_path(tmp_path):
    cfg = TokenizerConfig(vocab_size=400, train_chars_per_task=20_000)
    train_bpe(_corpora(documents=10), cfg, tmp_path / "mine")
    tokenizer, digest = prepare_tokenizer([], TokenizerConfig(path=str(tmp_path / "mine")), tmp_path / "cache")
    assert len(tokenizer) == 400 and len(digest) == 16
    with pytest.raises(DataError, match="not a directory"):
        prepare_tokenizer([], TokenizerConfig(path=str(tmp_path / "missing")), tmp_path)


def test_tokenizer_without_a_language_is_refused(tmp_path):
    cfg = TokenizerConfig(vocab_size=600, train_chars_per_task=40_000)
    train_bpe(_corpora(("en", "fr"), documents=20), cfg, tmp_path / "latin")
    tokenizer = AutoTokenizer.from_pretrained(str(tmp_path / "latin"))
    assert check_coverage(tokenizer, build_bible_corpus("en", "en"))["bytes_per_token"] > 2
    with pytest.raises(DataError, match="task 'ja'.*does not cover this language"):
        check_coverage(tokenizer, build_bible_corpus("ja", "ja"))


def test_vocab_size_is_validated():
    with pytest.raises(ValueError, match="vocab_size=100 must be at least 257"):
        TokenizerConfig(vocab_size=100)
