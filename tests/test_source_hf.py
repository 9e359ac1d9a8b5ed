"""`source: hf` (issue 20 item 4): Hugging Face data sets read from disk, offline and streamed; the data sets are
written by the tests themselves with `datasets` and pyarrow (never from a hub)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mer.data.config import DataConfig, TaskConfig, TokenizerConfig
from mer.data.pipeline import prepare_data
from mer.data.sources.hf import build_hf_corpus

datasets = pytest.importorskip("datasets")


def _texts(n: int, word: str) -> list[str]:
    return [f"{word} document {i} with a few more words of plain English text in it." for i in range(n)]


def _hf_task(**fields) -> TaskConfig:
    return TaskConfig(name="en", source="hf", **fields)


def _arrow_files_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.arrow")) if folder.is_dir() else []


def test_hf_source_save_to_disk_folder_with_its_splits(tmp_path):
    folder = tmp_path / "saved"
    datasets.DatasetDict({
        "train": datasets.Dataset.from_dict({"id": list(range(300)), "content": _texts(300, "train")}),
        "validation": datasets.Dataset.from_dict({"id": list(range(20)), "content": _texts(20, "held")}),
    }).save_to_disk(str(folder))
    corpus = build_hf_corpus(_hf_task(dataset=str(folder), text_field="content", val_split="validation"))
    assert list(corpus.train_documents()) == _texts(300, "train")
    assert list(corpus.val_documents()) == _texts(20, "held")
    cfg = DataConfig(tasks=[_hf_task(dataset=str(folder), text_field="content", val_split="validation")],
                     data_dir=str(tmp_path / "cache"), min_val_tokens=2,
                     tokenizer=TokenizerConfig(vocab_size=300, train_chars_per_task=10_000))
    shards = prepare_data(cfg).shards[0]
    assert shards.n_tokens("train") > 0 and shards.n_tokens("val") > 0
    assert "Hugging Face data set" in shards.manifest["source"]


def test_hf_source_parquet_folder_is_streamed_without_an_arrow_copy(tmp_path):
    folder = tmp_path / "export" / "data"
    folder.mkdir(parents=True)
    for shard in range(2):
        pq.write_table(pa.table({"text": _texts(150, f"part{shard}")}), folder / f"train-0000{shard}-of-00002.parquet")
    pq.write_table(pa.table({"text": _texts(10, "val")}), folder / "validation-00000-of-00001.parquet")
    cache = Path(os.environ["HF_DATASETS_CACHE"])
    arrow_before = _arrow_files_under(cache)
    corpus = build_hf_corpus(_hf_task(dataset=str(folder.parent), val_split="validation"))
    assert list(corpus.train_documents()) == _texts(150, "part0") + _texts(150, "part1")
    assert list(corpus.val_documents()) == _texts(10, "val")
    assert _arrow_files_under(cache) == arrow_before  # streamed from the Parquet files, never converted


def test_hf_source_jsonl_glob_with_a_share_held_out_by_hash(tmp_path):
    for part in range(2):
        with open(tmp_path / f"part-{part}.jsonl", "w") as handle:
            for text in _texts(200, f"json{part}"):
                handle.write(json.dumps({"text": text, "url": "x"}) + "\n")
    corpus = build_hf_corpus(_hf_task(dataset=str(tmp_path / "part-*.jsonl"), val_fraction=0.1))
    train, val = list(corpus.train_documents()), list(corpus.val_documents())
    assert sorted(train + val) == sorted(_texts(200, "json0") + _texts(200, "json1"))
    assert not set(train) & set(val) and 15 <= len(val) <= 80


def test_hf_source_hub_name_from_the_local_cache_only(tmp_path, monkeypatch):
    """A hub data set already downloaded is found in the cache (refs/main -> its snapshot) with no network."""
    import huggingface_hub.constants

    repo = tmp_path / "hub" / "datasets--someone--tiny-corpus"
    revision = "0" * 40
    data = repo / "snapshots" / revision / "data"
    data.mkdir(parents=True)
    pq.write_table(pa.table({"text": _texts(50, "hub")}), data / "train-00000-of-00001.parquet")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(revision)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    corpus = build_hf_corpus(_hf_task(dataset="someone/tiny-corpus", val_fraction=0.1))
    assert sorted(list(corpus.train_documents()) + list(corpus.val_documents())) == sorted(_texts(50, "hub"))


def test_hf_source_identity_uses_stamps_like_files(tmp_path):
    """The data set's files are hashed once per cache; a changed one changes the fingerprint."""
    folder = tmp_path / "saved"
    datasets.Dataset.from_dict({"text": _texts(100, "a")}).save_to_disk(str(folder))
    first = build_hf_corpus(_hf_task(dataset=str(folder))).fingerprint
    datasets.Dataset.from_dict({"text": _texts(100, "b")}).save_to_disk(str(tmp_path / "other"))
    assert build_hf_corpus(_hf_task(dataset=str(tmp_path / "other"))).fingerprint != first
    assert build_hf_corpus(_hf_task(dataset=str(folder))).fingerprint == first


def _saved_dataset_dict(folder: Path) -> str:
    datasets.DatasetDict({
        "train": datasets.Dataset.from_dict({"text": _texts(600, "train")}),
        "validation": datasets.Dataset.from_dict({"text": _texts(60, "held")}),
    }).save_to_disk(str(folder))
    return str(folder)


def _jsonl_parts(folder: Path) -> str:
    folder.mkdir()
    for part in range(3):
        with open(folder / f"part-{part}.jsonl", "w") as handle:
            handle.writelines(json.dumps({"text": text}) + "\n" for text in _texts(200, f"json{part}"))
    return str(folder / "part-*.jsonl")


HF_LAYOUTS = {"save_to_disk_rows": (_saved_dataset_dict, {"val_split": "validation"}),
              "streamed_files_by_hash": (_jsonl_parts, {"val_fraction": 0.1})}


@pytest.mark.parametrize("layout", sorted(HF_LAYOUTS))
def test_hf_source_pieces_give_the_whole_split_in_order(tmp_path, layout):
    """Cut into pieces (row ranges of a saved data set, the files of a streamed one), the pieces one after the other
    give the documents of each split in the order the whole split gives them."""
    write, fields = HF_LAYOUTS[layout]
    corpus = build_hf_corpus(_hf_task(dataset=write(tmp_path / "data"), **fields))
    pieces = corpus.pieces(8 << 10)  # 8 KiB: the saved train split (~45 KB of Arrow) is several row ranges
    assert len(pieces) >= 3 and len({piece.key for piece in pieces}) == len(pieces)
    read = [pair for piece in pieces for pair in piece.read()]
    assert [text for split, text in read if split == "train"] == list(corpus.train_documents())
    assert [text for split, text in read if split == "val"] == list(corpus.val_documents())


@pytest.mark.slow
def test_workers_identical_hf_source_1_2(tmp_path):
    """An hf task prepared in pieces by one process and by two worker processes: byte-identical shard folders."""
    from prepare_helpers import folder_bytes

    from mer.data.prepare_config import PrepareConfig

    dataset = _saved_dataset_dict(tmp_path / "data")
    folders = []
    for workers in (1, 2):
        cfg = DataConfig(tasks=[_hf_task(dataset=dataset, val_split="validation")], min_val_tokens=2,
                         data_dir=str(tmp_path / f"w{workers}"),
                         tokenizer=TokenizerConfig(vocab_size=300, train_chars_per_task=10_000))
        prepared = prepare_data(cfg, PrepareConfig(workers=workers, piece_bytes=8 << 10))
        assert len(prepared.shards[0].paths("train")) >= 3
        folders.append(folder_bytes(tmp_path / f"w{workers}"))
    assert folders[0] == folders[1]
