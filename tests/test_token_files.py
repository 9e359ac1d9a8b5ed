"""`source: tokens` over many files (issue 20 item 4): a folder or glob of flat token arrays made elsewhere, read end
to end in sorted order, each file checked, identified once and stamped after (item 3), and trained on directly."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from mer_testing import word_tokenizer

from mer.data import identity
from mer.data.config import DataConfig, TaskConfig, TokenizerConfig
from mer.data.corpus import DataError
from mer.data.pipeline import prepare_data
from mer.data.token_view import ConcatenatedTokens

VOCAB = 512


def _write_pieces(folder: Path, sizes: list[int], seed: int, dtype=np.uint16) -> np.ndarray:
    """Token files piece-000.bin... holding consecutive parts of one random array; returns the whole array."""
    folder.mkdir(parents=True, exist_ok=True)
    whole = np.random.default_rng(seed).integers(0, VOCAB, size=sum(sizes), dtype=dtype)
    start = 0
    for i, size in enumerate(sizes):
        whole[start:start + size].tofile(folder / f"piece-{i:03d}.bin")
        start += size
    return whole


def _tokens_config(tmp_path: Path, train: list[str], val: list[str]) -> DataConfig:
    tokenizer = word_tokenizer(tmp_path / "tokenizer", VOCAB)
    return DataConfig(tasks=[TaskConfig(name="pre", language="und", source="tokens", train_files=train,
                                        val_files=val)],
                      data_dir=str(tmp_path / "cache"), tokenizer=TokenizerConfig(path=str(tokenizer)),
                      budget_tokens=2048, min_val_tokens=2)


def test_tokens_many_files_of_a_folder_and_a_glob_in_sorted_order(tmp_path):
    train = _write_pieces(tmp_path / "train", [1000, 37, 2500, 1], seed=0)
    val = _write_pieces(tmp_path / "val", [300, 300], seed=1)
    cfg = _tokens_config(tmp_path, [str(tmp_path / "train")], [str(tmp_path / "val" / "piece-*.bin")])
    info = prepare_data(cfg).shards[0]
    assert [p.name for p in info.paths("train")] == [f"piece-{i:03d}.bin" for i in range(4)]
    assert info.n_tokens("train") == train.size and info.n_tokens("val") == val.size
    assert np.array_equal(np.asarray(info.tokens("train")), train)
    assert np.array_equal(info.tokens("val")[:650], val)
    assert [f["tokens"] for f in info.manifest["splits"]["train"]["shards"]] == [1000, 37, 2500, 1]


def test_tokens_many_files_read_across_file_boundaries():
    """Blocks are read by global offsets; one that spans two files gets the tokens of both."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        whole = _write_pieces(Path(tmp), [5, 1, 7, 3], seed=2)
        files = sorted(Path(tmp).glob("*.bin"))
        tokens = ConcatenatedTokens([np.memmap(path, dtype=np.uint16, mode="r") for path in files])
        assert len(tokens) == 16 and tokens.max() == whole.max()
        offsets = np.array([[0], [4], [9]]) + np.arange(6)  # [3, 6]: rows crossing 1, 2 and 1 boundaries
        assert np.array_equal(tokens[offsets[:2]], whole[offsets[:2]])
        assert np.array_equal(tokens[3:14], whole[3:14]) and np.array_equal(tokens[:], whole)
        with pytest.raises(IndexError):
            tokens[np.array([16])]


def test_tokens_many_files_each_file_is_checked(tmp_path):
    _write_pieces(tmp_path / "train", [100, 100], seed=0)
    _write_pieces(tmp_path / "val", [100], seed=1)
    (tmp_path / "train" / "piece-002.bin").write_bytes(b"\x01\x02\x03")  # 3 bytes: no whole uint16 count
    cfg = _tokens_config(tmp_path, [str(tmp_path / "train")], [str(tmp_path / "val")])
    with pytest.raises(DataError, match=r"piece-002\.bin has 3 bytes, not a whole number of uint16 tokens"):
        prepare_data(cfg)
    np.array([1, VOCAB + 5], dtype=np.uint16).tofile(tmp_path / "train" / "piece-002.bin")
    with pytest.raises(DataError, match=rf"piece-002\.bin holds token id {VOCAB + 5} but the tokenizer has {VOCAB}"):
        prepare_data(cfg)


def test_tokens_many_files_train_a_few_steps(tmp_path):
    from mer_testing import tiny_run_config

    from mer.launch.runner import run_training

    _write_pieces(tmp_path / "train", [3000, 3000, 3000], seed=0)
    _write_pieces(tmp_path / "val", [200, 200], seed=1)
    cfg = tiny_run_config(_tokens_config(tmp_path, [str(tmp_path / "train")], [str(tmp_path / "val")]),
                          tmp_path / "runs", budget_tokens=1024)
    summary = run_training(cfg, "run", json.loads(json.dumps(dataclasses.asdict(cfg), default=str)))
    assert summary["status"] == "completed", summary


def test_no_rescan_token_files_are_stamped_and_a_changed_one_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(identity, "RACY_NS", 0)
    _write_pieces(tmp_path / "train", [1 << 20, 1 << 20], seed=0)  # 4 MB
    _write_pieces(tmp_path / "val", [1000], seed=1)
    cfg = _tokens_config(tmp_path, [str(tmp_path / "train")], [str(tmp_path / "val")])
    prepare_data(cfg)
    before = _rchar()  # the bytes this process read, counted by the kernel
    prepare_data(cfg, on_change="refuse")
    assert _rchar() - before < 1 << 20, "a start read the 4 MB of token files again"
    piece = tmp_path / "train" / "piece-001.bin"
    data = np.fromfile(piece, dtype=np.uint16)
    data[7] = (data[7] + 1) % VOCAB
    data.tofile(piece)
    with pytest.raises(DataError, match=rf"train_files file {piece} changed .* prepare it again with "
                                        r"`python -m mer.data.prepare`"):
        prepare_data(cfg, on_change="refuse")


def _rchar() -> int:
    return int(next(line for line in Path("/proc/self/io").read_text().splitlines()
                    if line.startswith("rchar:")).split()[1])
