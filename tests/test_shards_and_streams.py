"""Token shards on disk, their cache, and the resumable TaskStream / TaskSequence over them."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from mer.data.atomic import atomic_directory
from mer.data.config import DataConfig, TaskConfig, TokenizerConfig
from mer.data.corpus import DataError
from mer.data.pipeline import prepare_data
from mer.data.shards import load_shards
from mer.data.stream import TaskSequence, TaskStream, eval_span


def test_manifest_and_uint16_shards(small_bible):
    cfg, prepared = small_bible
    assert [s.name for s in prepared.shards] == ["en", "fr", "de", "ar", "ja"]
    for info in prepared.shards:
        manifest = json.loads((info.directory / "manifest.json").read_text())
        assert manifest["dtype"] == "uint16" and manifest["tokenizer_hash"] == prepared.tokenizer_hash
        train = info.tokens("train")
        assert train.size == manifest["splits"]["train"]["tokens"] > 10_000
        # Documents are separated by EOS: one per document.
        assert int((train == manifest["eos_token_id"]).sum()) == manifest["splits"]["train"]["documents"]
        assert int(train.max()) < manifest["vocab_size"]


def test_second_preparation_reuses_the_cache(small_bible):
    cfg, prepared = small_bible
    stamps = [(s.directory / "train.bin").stat().st_mtime_ns for s in prepared.shards]
    again = prepare_data(cfg)
    assert [s.directory for s in again.shards] == [s.directory for s in prepared.shards]
    assert [(s.directory / "train.bin").stat().st_mtime_ns for s in again.shards] == stamps


def test_interrupted_build_leaves_nothing_that_looks_complete(tmp_path):
    final = tmp_path / "entry"
    with pytest.raises(RuntimeError):
        with atomic_directory(final) as staging:
            (staging / "half.bin").write_bytes(b"x")
            raise RuntimeError("killed")
    assert not final.exists()
    assert [p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")] == []


def test_truncated_shard_is_detected(small_bible, tmp_path):
    import shutil

    _, prepared = small_bible
    copy = tmp_path / "copy"
    shutil.copytree(prepared.shards[0].directory, copy)
    with open(copy / "train.bin", "r+b") as handle:
        handle.truncate(100)
    with pytest.raises(DataError, match="train.bin is missing or has the wrong size.*rm -r .*run the same command again"):
        load_shards(copy)


def test_concurrent_preparation_of_the_same_data(tmp_path):
    """Two processes (two Slurm jobs) prepare the same sequence at once; both succeed, one set of shards."""
    script = textwrap.dedent(f"""
        from mer.data.config import DataConfig, TaskConfig, TokenizerConfig
        from mer.data.pipeline import prepare_data
        cfg = DataConfig(tasks=[TaskConfig(name=l, max_train_documents=25) for l in ("en", "ja")],
                         data_dir={str(tmp_path)!r}, tokenizer=TokenizerConfig(vocab_size=400, train_chars_per_task=30000))
        p = prepare_data(cfg)
        print(*[shard["sha256"] for s in p.shards for shard in s.manifest["splits"]["train"]["shards"]])
    """)
    procs = [subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outputs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    assert outputs[0][0] == outputs[1][0]
    shard_dirs = list((tmp_path / "shards").glob("*/*"))
    assert sorted(d.name.split("-")[0] for d in shard_dirs if d.is_dir()) == ["en", "ja"]
    assert not list(tmp_path.rglob(".*staging*"))


def test_user_corpus_and_pretokenized_tasks(tmp_path):
    words = "the quick brown fox jumps over the lazy dog while five boxing wizards jump quickly".split()
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        (tmp_path / f"{name}.txt").write_text(
            "\n\n".join(" ".join(rng.choice(words, 30)) for _ in range(300)))
    cfg = DataConfig(
        tasks=[TaskConfig(name=n, language="en", source="files", train_files=[str(tmp_path / f"{n}.txt")],
                          val_fraction=0.05) for n in ("a", "b")],
        data_dir=str(tmp_path / "cache"), tokenizer=TokenizerConfig(vocab_size=300, train_chars_per_task=10_000),
        min_val_tokens=2,  # tiny test data: about 15 held-out paragraphs, far under the default minimum
    )
    prepared = prepare_data(cfg)
    assert all(s.n_tokens("val") > 0 for s in prepared.shards)
    # The same tokens registered as a pre-tokenized task reuse the files in place.
    tokenizer_dir = next(p for p in (tmp_path / "cache" / "tokenizers").iterdir() if p.is_dir())  # not the .lock
    shard = prepared.shards[0]
    tokens_cfg = DataConfig(
        tasks=[TaskConfig(name="pre", language="en", source="tokens", train_files=[str(shard.path("train"))],
                          val_files=[str(shard.path("val"))])],
        data_dir=str(tmp_path / "cache2"), tokenizer=TokenizerConfig(path=str(tokenizer_dir)), min_val_tokens=2,
    )
    pre = prepare_data(tokens_cfg).shards[0]
    assert np.array_equal(pre.tokens("train"), shard.tokens("train"))
    # A token file made with a bigger vocabulary than the tokenizer is refused.
    np.arange(1000, dtype=np.uint16).tofile(tmp_path / "big.bin")
    bad = DataConfig(tasks=[TaskConfig(name="pre", source="tokens", language="en", train_files=[str(tmp_path / "big.bin")],
                                       val_files=[str(shard.path("val"))])],
                     data_dir=str(tmp_path / "cache2"), tokenizer=TokenizerConfig(path=str(tokenizer_dir)))
    with pytest.raises(DataError, match="holds token id 999 but the tokenizer has 300 tokens"):
        prepare_data(bad)


def test_empty_corpus_is_refused_before_tokenizing(tmp_path):
    (tmp_path / "empty.txt").write_text("\n\n")
    cfg = DataConfig(tasks=[TaskConfig(name="e", language="en", source="files", train_files=[str(tmp_path / "empty.txt")])],
                     data_dir=str(tmp_path / "cache"), tokenizer=TokenizerConfig(vocab_size=300, train_chars_per_task=10_000))
    with pytest.raises(DataError, match="task 'e'.*empty"):
        prepare_data(cfg)


def _stream(tokens, **kw):
    return TaskStream(tokens, seq_len=8, seed=3, **kw)


def test_stream_blocks_are_shifted_windows_in_a_seeded_order():
    tokens = np.arange(1001, dtype=np.uint16)
    stream = _stream(tokens)
    assert stream.n_blocks == 125
    ids, blocks = stream.next_blocks(4)
    assert blocks.shape == (4, 9)
    for i, block in zip(ids, blocks):
        assert list(block) == list(range(i * 8, i * 8 + 9))
    assert list(_stream(tokens).next_block_ids(4)) == list(ids)  # same seed, same order
    assert list(TaskStream(tokens, 8, seed=4).next_block_ids(4)) != list(ids)


def test_stream_resumes_exactly_from_its_state():
    tokens = np.arange(1001, dtype=np.uint16)
    uninterrupted = _stream(tokens, allow_repeat=True)
    expected = [uninterrupted.next_block_ids(7) for _ in range(40)]  # crosses epochs
    first = _stream(tokens, allow_repeat=True)
    got = [first.next_block_ids(7) for _ in range(13)]
    resumed = _stream(tokens, allow_repeat=True)
    resumed.load_state_dict(first.state_dict())
    got += [resumed.next_block_ids(7) for _ in range(27)]
    assert all(np.array_equal(a, b) for a, b in zip(expected, got))


def test_ranks_read_disjoint_blocks_that_cover_the_single_process_order():
    tokens = np.arange(4001, dtype=np.uint16)
    single = _stream(tokens)
    ranks = [_stream(tokens, rank=r, world_size=2) for r in range(2)]
    for _ in range(10):
        both = np.concatenate([r.next_block_ids(3) for r in ranks])
        assert np.array_equal(both, single.next_block_ids(6))
    assert ranks[0].state_dict() == {**ranks[1].state_dict()}


def test_epoch_end_without_repeat_is_an_error():
    stream = _stream(np.arange(81, dtype=np.uint16))
    stream.next_block_ids(10)
    with pytest.raises(DataError, match="ran past the end.*allow_repeat"):
        stream.next_block_ids(1)


def test_eval_span_is_the_start_of_the_validation_split_whatever_the_model():
    tokens = np.arange(100, dtype=np.uint16)
    assert np.array_equal(eval_span(tokens, 40), tokens[:40]) and eval_span(tokens, 40).dtype == np.uint16
    assert np.array_equal(eval_span(tokens, None), tokens)  # null: the whole split
    with pytest.raises(DataError, match=r"task 'fr': data.eval_tokens=101 is longer than its validation split of "
                                        r"100 tokens; lower data.eval_tokens to at most 100, or set it to null"):
        eval_span(tokens, 101, "fr")
    with pytest.raises(DataError, match="no target to score"):
        eval_span(tokens[:1], None)


def test_sequence_budgets(small_bible):
    cfg, prepared = small_bible
    seq = TaskSequence(prepared.shards, seq_len=64, new_blocks_per_step=4, seed=0,
                       budget_tokens=[2560] * 5, eval_tokens=300)
    assert [t.steps for t in seq.tasks] == [10] * 5 and seq.total_steps == 50
    assert all(len(t.eval_tokens) == 300 for t in seq.tasks)
    assert np.array_equal(seq.tasks[1].eval_tokens, prepared.shards[1].tokens("val")[:300])
    ids = seq.tasks[2].stream.next_block_ids(3)
    assert np.array_equal(seq.read_blocks(2, ids), seq.tasks[2].stream.read(ids))
    with pytest.raises(DataError, match="task 'en': the budget needs .* lower data.budget_tokens"):
        TaskSequence(prepared.shards, seq_len=64, new_blocks_per_step=4, seed=0, budget_tokens=[10**8] * 5)
    with pytest.raises(DataError, match="task 'en': data.eval_tokens=1,000,000,000 is longer than its validation split"):
        TaskSequence(prepared.shards, seq_len=64, new_blocks_per_step=4, seed=0, budget_tokens=[2560] * 5,
                     eval_tokens=10**9)


@pytest.mark.parametrize("n", [1, 2, 3, 7, 125, 1000, 4097])
def test_shuffled_index_is_a_permutation(n):
    from mer.data.stream import shuffled_index

    order = shuffled_index(np.arange(n), n, (3, 0, 0))
    assert sorted(order.tolist()) == list(range(n))
    if n >= 125:
        assert not np.array_equal(order, shuffled_index(np.arange(n), n, (3, 0, 1)))  # a new order per epoch
        assert abs(np.corrcoef(np.arange(n), order)[0, 1]) < 0.2  # no visible trace of the input order


def test_shuffled_index_is_uniform_over_seeds():
    """Where block 0 lands, over 4000 seeds, is uniform over 10 positions (chi-square, fixed seeds)."""
    from scipy.stats import chisquare

    from mer.data.stream import shuffled_index

    landing = [int(np.flatnonzero(shuffled_index(np.arange(10), 10, (seed,)) == 0)[0]) for seed in range(4000)]
    assert chisquare(np.bincount(landing, minlength=10)).pvalue > 0.001
