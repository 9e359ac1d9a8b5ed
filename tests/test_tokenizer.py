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


def test_bpe_training_reads_a_bounded_sample_of_each_task(tmp_path):
    """However large a task, the BPE reads its first `train_chars_per_task` characters (and the rest of the document
    it stops in), never more: a 100B-token corpus costs the tokenizer what a small one does (issue 20 item 5)."""
    from mer.data.corpus import TaskCorpus

    pulled = {"en": 0, "fr": 0}

    def documents(name: str):
        def generate():
            for i in range(100_000):  # 30M characters if read to the end
                text = f"{name} document {i} " + "words of text " * 20
                pulled[name] += len(text)
                yield text
        return generate

    corpora = [TaskCorpus(name, name, "generated", name, documents(name), documents(name)) for name in pulled]
    cfg = TokenizerConfig(vocab_size=300, train_chars_per_task=10_000)
    train_bpe(corpora, cfg, tmp_path / "a")
    longest = len("fr document 99999 " + "words of text " * 20)
    assert all(10_000 <= chars <= 10_000 + longest for chars in pulled.values()), pulled
    for name in pulled:
        pulled[name] = 0
    train_bpe(corpora, cfg, tmp_path / "b")  # the same sample, the same merges
    assert (tmp_path / "a" / "tokenizer.json").read_bytes() == (tmp_path / "b" / "tokenizer.json").read_bytes()


def test_a_tokenizer_over_65535_tokens_gives_uint32_shards_end_to_end(tmp_path):
    """Llama 3's 128k vocabulary at a small scale: 70,001 tokens, ids above 65,535 in the text; the shards are uint32
    with those ids intact, and a run trains and evaluates on them."""
    import dataclasses
    import json

    import numpy as np
    from mer_testing import tiny_run_config, word_tokenizer

    from mer.data.config import DataConfig, TaskConfig
    from mer.data.pipeline import prepare_data
    from mer.launch.runner import run_training

    vocab = 70_001
    rng = np.random.default_rng(0)
    for split, n in (("train", 400), ("val", 40)):
        ids = rng.integers(60_000, vocab - 1, size=(n, 30))
        (tmp_path / f"{split}.txt").write_text("\n\n".join(" ".join(f"<{i}>" for i in row) for row in ids))
    tokenizer_dir = word_tokenizer(tmp_path / "tokenizer", vocab)
    data = DataConfig(tasks=[TaskConfig(name="big", language="und", source="files",
                                        train_files=[str(tmp_path / "train.txt")],
                                        val_files=[str(tmp_path / "val.txt")])],
                      data_dir=str(tmp_path / "cache"), tokenizer=TokenizerConfig(path=str(tokenizer_dir)),
                      min_val_tokens=2)
    info = prepare_data(data).shards[0]
    assert info.dtype == np.uint32 and info.manifest["dtype"] == "uint32"
    assert info.path("train").stat().st_size == 4 * info.n_tokens("train")
    first = (tmp_path / "train.txt").read_text().split("\n\n")[0].split()
    assert info.tokens("train")[:30].tolist() == [int(word[1:-1]) for word in first]  # ids > 65,535 intact
    assert info.manifest["splits"]["train"]["max_token_id"] > 65_535
    cfg = tiny_run_config(data, tmp_path / "runs", budget_tokens=512)
    summary = run_training(cfg, "run", json.loads(json.dumps(dataclasses.asdict(cfg), default=str)))
    assert summary["status"] == "completed", summary
