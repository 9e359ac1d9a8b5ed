"""The user's own corpora: text, JSONL, Parquet, directories and globs."""

from __future__ import annotations

import gzip
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mer.data.corpus import DataError
from mer.data.sources.files import build_files_corpus


def _paragraphs(n: int, word: str) -> list[str]:
    return [f"{word} paragraph {i} with some words to make it longer." for i in range(n)]


def test_plain_text_paragraphs_and_hash_split(tmp_path):
    docs = _paragraphs(400, "alpha")
    (tmp_path / "a.txt").write_text("\n\n".join(docs))
    corpus = build_files_corpus("t", "en", [str(tmp_path / "a.txt")], val_fraction=0.1)
    train, val = list(corpus.train_documents()), list(corpus.val_documents())
    assert sorted(train + val) == sorted(docs)
    assert not set(train) & set(val)
    assert 15 <= len(val) <= 70  # ~10% of 400, by a hash rule
    # The rule is a property of each document, so reordering the file does not move documents.
    (tmp_path / "b.txt").write_text("\n\n".join(reversed(docs)))
    again = build_files_corpus("t", "en", [str(tmp_path / "b.txt")], val_fraction=0.1)
    assert sorted(again.val_documents()) == sorted(val)


def test_jsonl_gz_parquet_directory_and_glob(tmp_path):
    folder = tmp_path / "export"
    folder.mkdir()
    with gzip.open(folder / "part-0.jsonl.gz", "wt") as handle:
        for text in _paragraphs(5, "json"):
            handle.write(json.dumps({"text": text, "url": "x"}) + "\n")
    pq.write_table(pa.table({"text": _paragraphs(4, "parquet")}), folder / "part-1.parquet")
    (tmp_path / "val.txt").write_text("held out one\n\nheld out two")
    corpus = build_files_corpus("t", "en", [str(folder)], val_files=[str(tmp_path / "v*.txt")])
    train = list(corpus.train_documents())
    assert len(train) == 9 and any(t.startswith("json") for t in train) and any(t.startswith("parquet") for t in train)
    assert list(corpus.val_documents()) == ["held out one", "held out two"]


def test_fingerprint_changes_with_content(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("one\n\ntwo")
    first = build_files_corpus("t", "en", [str(path)]).fingerprint
    path.write_text("one\n\nthree")
    assert build_files_corpus("t", "en", [str(path)]).fingerprint != first


def test_missing_path_names_task_and_path(tmp_path):
    with pytest.raises(DataError, match="task 'de'.*nowhere.*matches no file"):
        build_files_corpus("de", "de", [str(tmp_path / "nowhere" / "*.txt")])


def test_undecodable_bytes_name_the_file_and_the_fix(tmp_path):
    path = tmp_path / "latin1.txt"
    path.write_bytes("caf\u00e9 au lait\n\nencore".encode("latin-1"))
    corpus = build_files_corpus("fr", "fr", [str(path)])
    with pytest.raises(DataError, match=r"latin1.txt: bytes at offset 3 are not valid utf-8.*decode_errors=replace"):
        list(corpus.train_documents()) + list(corpus.val_documents())
    replaced = build_files_corpus("fr", "fr", [str(path)], decode_errors="replace", val_files=[str(path)])
    assert "\ufffd" in next(replaced.train_documents())


def test_jsonl_without_the_text_field(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_text(json.dumps({"content": "x"}) + "\n")
    corpus = build_files_corpus("t", "en", [str(path)], val_files=[str(path)])
    with pytest.raises(DataError, match="a.jsonl:1: no field 'text'.*text_field"):
        list(corpus.train_documents())


def test_unknown_file_type(tmp_path):
    (tmp_path / "a.docx").write_text("x")
    with pytest.raises(DataError, match="unknown file type"):
        build_files_corpus("t", "en", [str(tmp_path / "a.docx")])
