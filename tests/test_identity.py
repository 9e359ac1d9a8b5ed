"""Input files identified without rescanning (issue 20 item 3): a corpus file is hashed once, when it is prepared;
a later start only stats it (the bytes this process reads are counted by the kernel in /proc/self/io, no mock);
a changed file is still caught, and `--verify` hashes everything again on demand."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mer.data import identity, shard_check
from mer.data.config import DataConfig, TaskConfig, TokenizerConfig
from mer.data.corpus import DataError
from mer.data.pipeline import prepare_data
from mer.data.verify import verify_data

CORPUS_BYTES = 24 << 20  # far more than a start reads otherwise (a few hundred KB of tokenizer and manifests)


def _bytes_read() -> int:
    """Bytes this process has read through read(2) and friends so far (the kernel's count)."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise AssertionError("no rchar in /proc/self/io")


def _write_corpus(folder: Path) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    words = np.array("the quick brown fox jumps over a lazy dog while five wizards box and jump".split())
    rng = np.random.default_rng(0)
    paragraph = "\n\n".join(" ".join(rng.choice(words, 40)) for _ in range(400)) + "\n\n"
    train = folder / "train.txt"
    with open(train, "w") as handle:
        for _ in range(CORPUS_BYTES // len(paragraph) + 1):
            handle.write(paragraph)
    val = folder / "val.txt"
    val.write_text(paragraph)
    return train, val


@pytest.fixture
def prepared(tmp_path, monkeypatch):
    """A 24 MB corpus prepared once (only its first 200 paragraphs are tokenized: the test is about hashing)."""
    monkeypatch.setattr(identity, "RACY_NS", 0)  # files written a moment ago may be stamped (see RACY_NS)
    monkeypatch.setattr(shard_check, "RACY_NS", 0)
    train, val = _write_corpus(tmp_path / "corpus")
    cfg = DataConfig(tasks=[TaskConfig(name="en", source="files", train_files=[str(train)], val_files=[str(val)],
                                       max_train_documents=200)],
                     data_dir=str(tmp_path / "cache"), min_val_tokens=2,
                     tokenizer=TokenizerConfig(vocab_size=300, train_chars_per_task=10_000))
    first = prepare_data(cfg)
    return cfg, first, train


def test_no_rescan_a_run_start_reads_stamps_not_the_corpus(prepared):
    cfg, first, train = prepared
    assert train.stat().st_size >= CORPUS_BYTES
    before = _bytes_read()
    again = prepare_data(cfg, on_change="refuse")  # what `python -m mer.run` does at every start
    read = _bytes_read() - before
    assert read < CORPUS_BYTES // 8, f"a start read {read:,} bytes of a {CORPUS_BYTES:,}-byte corpus"
    assert again.shards[0].manifest == first.shards[0].manifest


def test_no_rescan_a_changed_file_is_still_caught(prepared):
    """Same size, mtime set back: the ctime (which no user call sets) and a re-hash still catch it."""
    cfg, _, train = prepared
    stat = train.stat()
    with open(train, "r+b") as handle:
        handle.seek(stat.st_size // 2)
        handle.write(b"X")
    os.utime(train, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert train.stat().st_size == stat.st_size and train.stat().st_mtime_ns == stat.st_mtime_ns
    with pytest.raises(DataError, match=rf"task 'en': train_files file {train} changed .* since the data was "
                                        r"prepared; prepare it again with `python -m mer.data.prepare`"):
        prepare_data(cfg, on_change="refuse")
    taken = prepare_data(cfg)  # the preparation takes the change: new text, new shards
    assert prepare_data(cfg, on_change="refuse").shards[0].directory == taken.shards[0].directory


def test_no_rescan_a_touched_file_with_the_same_bytes_is_hashed_once_and_accepted(prepared):
    cfg, first, train = prepared
    os.utime(train)  # a new mtime, the same bytes (a copy with cp -p, a chmod: the same story)
    before = _bytes_read()
    assert prepare_data(cfg, on_change="refuse").shards[0].directory == first.shards[0].directory
    assert _bytes_read() - before >= CORPUS_BYTES  # hashed again: the stamp alone could not tell
    before = _bytes_read()
    prepare_data(cfg, on_change="refuse")
    assert _bytes_read() - before < CORPUS_BYTES // 8  # and stamped anew: not read at the next start


def test_no_rescan_a_removed_or_added_file_is_refused_at_a_start(prepared, tmp_path):
    cfg, _, train = prepared
    folder_cfg = DataConfig(tasks=[TaskConfig(name="en", source="files", train_files=[str(train.parent / "t*.txt")],
                                              val_files=cfg.tasks[0].val_files, max_train_documents=200)],
                            data_dir=cfg.data_dir, tokenizer=cfg.tokenizer)
    prepare_data(folder_cfg)
    extra = train.parent / "train2.txt"
    extra.write_text("one more paragraph of text\n\nand another one\n")
    with pytest.raises(DataError, match=rf"train_files file {extra} was added since the data was prepared"):
        prepare_data(folder_cfg, on_change="refuse")
    prepare_data(folder_cfg)
    extra.unlink()
    with pytest.raises(DataError, match=rf"train_files file {extra} was removed since the data was prepared"):
        prepare_data(folder_cfg, on_change="refuse")


def test_verify_hashes_every_file_again_and_says_what_it_checked(prepared):
    cfg, _, train = prepared
    before = _bytes_read()
    lines = verify_data(cfg)
    assert _bytes_read() - before >= CORPUS_BYTES
    assert any(line.startswith("task en: 2 input file(s)") and "match the content hashes recorded" in line
               and "match their manifest" in line for line in lines), lines


@pytest.mark.slow
def test_verify_on_the_command_line_names_a_changed_file(prepared):
    cfg, _, train = prepared
    args = [sys.executable, "-m", "mer.data.prepare", "--verify", f"data.data_dir={cfg.data_dir}",
            f"data.tasks=[{{name:en,source:files,train_files:[{train}],val_files:[{cfg.tasks[0].val_files[0]}],"
            "max_train_documents:200}]", "data.tokenizer.vocab_size=300", "data.tokenizer.train_chars_per_task=10000"]
    ok = subprocess.run(args, capture_output=True, text=True, cwd=Path(cfg.data_dir).parent, timeout=900)
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert "task en: 2 input file(s)" in ok.stdout and "verified: every file was read" in ok.stdout
    with open(train, "r+b") as handle:
        handle.write(b"Z")
    bad = subprocess.run(args, capture_output=True, text=True, cwd=Path(cfg.data_dir).parent, timeout=900)
    lines = [line for line in (bad.stdout + bad.stderr).splitlines() if line.strip()]
    assert bad.returncode == 2 and len(lines) == 1, lines
    assert f"train_files file {train} changed" in lines[0]
