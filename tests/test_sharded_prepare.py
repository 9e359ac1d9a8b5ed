"""Sharded preparation (issue 20, items 1 and 2): a task's input cut into pieces, one token shard per piece, the
same folder byte for byte whatever the number of workers; a killed preparation keeps its finished pieces; the
trainer's streams read a task of many shards as one array.

Real files, real `python -m mer.data.prepare` processes, real worker processes; small JSONL and text corpora cut into
pieces of 4 KiB so that a task has a dozen pieces."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
from prepare_helpers import PIECE, cli_args, data_config, folder_bytes, run_prepare, write_corpus

from mer.data.pipeline import prepare_data
from mer.data.prepare_config import PrepareConfig
from mer.data.shards import write_split
from mer.data.stream import TaskSequence
from mer.data.token_view import ConcatenatedTokens


@pytest.fixture(scope="module")
def corpus_files(tmp_path_factory) -> dict[str, Path]:
    return write_corpus(tmp_path_factory.mktemp("corpus"))


@pytest.fixture(scope="module")
def reference(tmp_path_factory, corpus_files):
    """The two tasks prepared in this process (one worker), pieces of 4 KiB."""
    data_dir = tmp_path_factory.mktemp("reference")
    prepared = prepare_data(data_config(data_dir, corpus_files), PrepareConfig(piece_bytes=PIECE))
    return data_dir, prepared


def test_a_task_is_cut_into_pieces_each_with_its_shards_listed_in_order(reference):
    _, prepared = reference
    for info in prepared.shards:
        manifest = info.manifest
        assert manifest["pieces"] >= 6  # ~30-40 KB in 4 KiB pieces
        for split in ("train", "val"):
            shards = manifest["splits"][split]["shards"]
            assert [s["file"] for s in shards] == sorted(s["file"] for s in shards)
            assert sum(s["tokens"] for s in shards) == manifest["splits"][split]["tokens"] == len(info.tokens(split))
            for shard in shards:
                data = (info.directory / shard["file"]).read_bytes()
                assert hashlib.sha256(data).hexdigest() == shard["sha256"]
                assert len(data) == shard["tokens"] * info.dtype.itemsize
        assert len(manifest["splits"]["train"]["shards"]) == manifest["pieces"]
        assert not [p for p in info.directory.iterdir() if p.name.startswith((".", "piece-"))]  # no lock, record, tmp


@pytest.mark.parametrize("task", [0, 1], ids=["jsonl_by_lines", "text_by_paragraphs"])
def test_the_shards_concatenated_are_the_tokens_of_the_whole_task_in_one_piece(reference, corpus_files, task,
                                                                                tmp_path):
    """The cut moves no document across a piece's end: the pieces' shards one after the other are what
    tokenizing the task's documents in one stream gives (as preparation did before pieces)."""
    from mer.data.corpus_build import build_corpus

    _, prepared = reference
    info = prepared.shards[task]
    corpus = build_corpus(data_config(tmp_path, corpus_files).tasks[task], tmp_path)
    for split, documents in (("train", corpus.train_documents()), ("val", corpus.val_documents())):
        whole = write_split(documents, prepared.tokenizer, tmp_path / f"{split}.bin", info.dtype)
        assert np.array_equal(np.fromfile(tmp_path / f"{split}.bin", dtype=info.dtype), np.asarray(info.tokens(split)))
        assert whole["documents"] == info.manifest["splits"][split]["documents"] > 10


@pytest.mark.slow
def test_workers_identical_1_2_3(reference, corpus_files, tmp_path):
    """1, 2 and 3 worker processes give byte-identical shard folders (shards and manifest), whatever order the
    pieces finished in."""
    expected = folder_bytes(reference[0])
    assert sum(name.endswith(".bin") for name in expected) >= 24
    for workers in (2, 3):
        data_dir = tmp_path / f"w{workers}"
        prepared = prepare_data(data_config(data_dir, corpus_files), PrepareConfig(workers=workers,
                                                                                    piece_bytes=PIECE))
        assert folder_bytes(data_dir) == expected, workers
        assert "0 kept" in prepared.pieces


def _pieces_folder(data_dir: Path, task: str) -> Path:
    [folder] = [p for p in (data_dir / "shards").rglob(f".{task}-*.pieces-*") if p.is_dir()]
    return folder


@pytest.mark.slow
def test_prepare_resume_after_kill_in_the_middle_of_a_shard(reference, corpus_files, tmp_path):
    """kill -9 half-way through the third piece's shard: the two finished pieces are kept (the same files, not
    rewritten), the next preparation builds only the rest, and the result equals an uninterrupted preparation's."""
    args = cli_args(tmp_path, corpus_files)
    killed = run_prepare(args, fault="prepare_piece:3")
    assert killed.returncode == -9 and "mer fault point prepare_piece:3 reached" in killed.stderr, killed.stderr[-2000:]
    folder = _pieces_folder(tmp_path, "a")
    assert sorted(p.name for p in folder.glob("piece-*.json")) == ["piece-00000.json", "piece-00001.json"]
    assert any(p.name.startswith(".train-00002.bin.tmp-") for p in folder.iterdir())  # the shard it was writing
    kept = {name: os.stat(folder / name) for name in ("train-00000.bin", "train-00001.bin")}
    assert not list((tmp_path / "shards").rglob("manifest.json"))

    again = run_prepare(args)
    assert again.returncode == 0, again.stderr[-3000:]
    n_a = json.loads(next((tmp_path / "shards").rglob("a-*/manifest.json")).read_text())["pieces"]
    assert f"task a: {n_a - 2} piece(s) prepared now, 2 kept" in again.stdout, again.stdout
    final = next(p for p in (tmp_path / "shards").rglob("a-*") if p.is_dir() and not p.name.startswith("."))
    for name, stat in kept.items():  # renamed with their folder, never written again
        assert (os.stat(final / name).st_ino, os.stat(final / name).st_mtime_ns) == (stat.st_ino, stat.st_mtime_ns)
    assert folder_bytes(tmp_path) == folder_bytes(reference[0])
    assert not list(tmp_path.rglob(".*pieces-*"))


@pytest.mark.slow
def test_prepare_resume_after_kill_of_a_worker(reference, corpus_files, tmp_path):
    """A worker process killed in the middle of a shard: the preparation says so in one line (exit 2) and keeps
    what is done; the same command then completes it, equal to an uninterrupted preparation."""
    args = [*cli_args(tmp_path, corpus_files), "workers=2"]
    killed = run_prepare(args, fault="prepare_piece:2")
    assert killed.returncode == 2, killed.stderr[-3000:]
    assert "a worker process of the preparation died" in killed.stderr and "Traceback" not in killed.stderr
    done_before = len(list(_pieces_folder(tmp_path, "a").glob("piece-*.json")))
    again = run_prepare([*cli_args(tmp_path, corpus_files), "workers=2"])
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"{done_before} kept" in again.stdout
    assert folder_bytes(tmp_path) == folder_bytes(reference[0])


def test_a_damaged_shard_of_many_is_refused_naming_it(reference, tmp_path):
    import shutil

    from mer.data.corpus import DataError
    from mer.data.shards import load_shards

    info = reference[1].shards[0]
    copy = tmp_path / info.directory.name
    shutil.copytree(info.directory, copy)
    (copy / "verified.json").unlink(missing_ok=True)
    victim = copy / info.manifest["splits"]["train"]["shards"][3]["file"]
    data = bytearray(victim.read_bytes())
    data[10] ^= 1
    victim.write_bytes(bytes(data))
    with pytest.raises(DataError, match=f"token shard {victim} does not match"):
        load_shards(copy)


def test_concatenated_tokens_read_like_one_array():
    rng = np.random.default_rng(1)
    parts = [rng.integers(0, 500, n).astype(np.uint16) for n in (7, 1, 13, 5)]
    whole = np.concatenate(parts)
    view = ConcatenatedTokens(parts)
    assert len(view) == view.size == len(whole) and view.max() == whole.max()
    index = rng.integers(0, len(whole), (4, 9))
    assert np.array_equal(view[index], whole[index]) and view[index].dtype == np.uint16
    for key in (slice(None), slice(3, 22), slice(6, 8), slice(20, 4), slice(0, None, 3)):
        assert np.array_equal(view[key], whole[key])
    assert view[-1] == whole[-1] and np.array_equal(np.asarray(view), whole)


def test_streams_over_many_shards_read_what_one_shard_gives(reference, corpus_files, tmp_path):
    """The trainer's task sequence on a task of many shards: the same blocks (across shard ends too) and the same
    held-out span as on the same task prepared in one piece per file."""
    one_piece = prepare_data(data_config(tmp_path, corpus_files), PrepareConfig(piece_bytes=1 << 30))
    assert all(len(info.paths("train")) == 1 for info in one_piece.shards)
    many = reference[1].shards
    assert all(len(info.paths("train")) > 5 for info in many)
    sequences = [TaskSequence(shards, seq_len=16, new_blocks_per_step=4, seed=3, budget_tokens=[640, 640],
                              eval_tokens=200) for shards in (one_piece.shards, many)]
    for one, other in zip(sequences[0].tasks, sequences[1].tasks, strict=True):
        assert one.stream.n_blocks == other.stream.n_blocks
        ids = np.arange(one.stream.n_blocks)
        assert np.array_equal(one.stream.read(ids), other.stream.read(ids))
        assert np.array_equal(one.eval_tokens, other.eval_tokens)
