import io
import math
import re
import shutil

import numpy as np
import pytest
import torch
from scipy.stats import chisquare

import mer.replay.buffer
import mer.replay.refs
from mer.replay.buffer import REJECTION_MIN_RATIO, BlockReader, BufferConfig, ReplayBuffer, pack_refs, unpack_refs
from mer.replay.refs import (
    MAX_TASK_INDEX,
    TaskLayout,
    decode_refs,
    draw_by_rejection,
    encode_refs,
    task_layout,
)

BLOCK_LEN = 4


class MemReader:
    """Tokens of block b of task t: [t, b, 7*t + b, 1] (uint32); counts its calls."""

    def __init__(self):
        self.calls = 0

    def read_blocks(self, task_index, block_ids):
        self.calls += 1
        ids = np.asarray(block_ids, dtype=np.int64)
        out = np.empty((ids.size, BLOCK_LEN), dtype=np.uint32)
        out[:, 0] = task_index
        out[:, 1] = ids
        out[:, 2] = 7 * task_index + ids
        out[:, 3] = 1
        return out


def tokens_of(task, ids):
    return MemReader().read_blocks(task, ids)


def _save_load(state):
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


def test_pack_unpack_round_trip():
    refs = pack_refs(3, np.array([0, 5, 2**40 - 1]))
    assert refs.dtype == np.int64
    tasks, ids = unpack_refs(refs)
    assert tasks.tolist() == [3, 3, 3] and ids.tolist() == [0, 5, 2**40 - 1]
    assert pack_refs(1, [2]).tolist() == [2**40 + 2]
    with pytest.raises(ValueError, match="block_ids"):
        pack_refs(0, [2**40])


def test_reader_protocol():
    assert isinstance(MemReader(), BlockReader)


def test_all_policy_keeps_everything_and_samples_without_duplicates():
    buf = ReplayBuffer(BufferConfig(), MemReader(), seed=0)
    buf.add(0, np.arange(10))
    buf.add(1, np.arange(100, 105))
    assert len(buf) == 15 and buf.n_seen == 15
    assert buf.refs().tolist() == pack_refs(0, np.arange(10)).tolist() + pack_refs(1, np.arange(100, 105)).tolist()
    for n in (1, 7, 15, 40):
        refs, toks = buf.sample(n, current_task_index=1)
        assert refs.shape == (min(n, 15),) and toks.shape == (min(n, 15), BLOCK_LEN)
        assert len(set(refs.tolist())) == refs.size  # no duplicates within a sample
        tasks, ids = unpack_refs(refs)
        assert np.array_equal(toks, np.stack([tokens_of(int(t), [int(b)])[0] for t, b in zip(tasks, ids)]))


def test_sampling_is_uniform_chi_square():
    buf = ReplayBuffer(BufferConfig(), MemReader(), seed=123)
    buf.add(0, np.arange(30))
    buf.add(1, np.arange(10))  # 40 blocks, 10 drawn per call
    counts = {int(r): 0 for r in buf.refs()}
    first_position = np.zeros(40)
    for _ in range(2000):
        refs, _ = buf.sample(10, current_task_index=1)
        assert len(set(refs.tolist())) == 10
        for r in refs:
            counts[int(r)] += 1
        first_position[list(counts).index(int(refs[0]))] += 1
    observed = np.array(list(counts.values()))
    assert observed.sum() == 20000
    assert chisquare(observed).pvalue > 1e-3  # each block drawn 2000 * 10/40 = 500 times on average
    assert chisquare(first_position).pvalue > 1e-3  # the order within a sample is random too
    assert observed.min() > 400 and observed.max() < 600


@pytest.mark.parametrize(
    "cap, batch_sizes, trials",
    [
        (10, [3, 1, 9, 20, 2, 15, 30, 20], 2000),  # 100 items; crosses the capacity inside a batch
        (2, [1, 4], 4000),  # 5 items: an off-by-one in j ~ U{0..i} shows at once
        (2, [1, 1, 1, 1, 1], 4000),
    ],
)
def test_reservoir_inclusion_probability_is_uniform(cap, batch_sizes, trials):
    n_items = sum(batch_sizes)
    counts = np.zeros(n_items)
    for seed in range(trials):
        buf = ReplayBuffer(BufferConfig(policy="reservoir", capacity=cap), MemReader(), seed=seed)
        start = 0
        for size in batch_sizes:
            buf.add(0, np.arange(start, start + size))
            start += size
        assert len(buf) == cap and buf.n_seen == n_items
        held = unpack_refs(buf.refs())[1]
        assert len(set(held.tolist())) == cap
        counts[held] += 1
    # every stream item is held with probability p = cap / n_items
    p = cap / n_items
    assert chisquare(counts).pvalue > 1e-3
    assert np.abs(counts - trials * p).max() < 5 * np.sqrt(trials * p * (1 - p))


def test_reservoir_fills_in_order_then_replaces():
    buf = ReplayBuffer(BufferConfig(policy="reservoir", capacity=5), MemReader(), seed=0)
    buf.add(0, np.arange(3))
    assert unpack_refs(buf.refs())[1].tolist() == [0, 1, 2]
    buf.add(0, np.arange(3, 1003))
    assert len(buf) == 5 and buf.n_seen == 1003
    assert unpack_refs(buf.refs())[1].tolist() != [0, 1, 2, 3, 4]  # replaced (probability 1 - 5/1003...)


@pytest.mark.parametrize("policy", ["all", "reservoir"])
def test_replay_current_task_false_excludes_current_task(policy):
    cfg = BufferConfig(policy=policy, capacity=1000, replay_current_task=False)
    buf = ReplayBuffer(cfg, MemReader(), seed=0)
    buf.add(0, np.arange(10))
    refs, toks = buf.sample(5, current_task_index=0)
    assert refs.size == 0 and toks.shape == (0, 0)  # nothing eligible during the first task
    buf.add(1, np.arange(5))
    assert buf.n_eligible(1) == 10
    refs, toks = buf.sample(100, current_task_index=1)
    assert refs.size == 10 and set(unpack_refs(refs)[0].tolist()) == {0}
    assert (toks[:, 0] == 0).all()
    assert buf.n_eligible(2) == 15  # at task 2 both earlier tasks are eligible
    both = ReplayBuffer(BufferConfig(policy=policy, capacity=1000), MemReader(), seed=0)
    both.add(0, np.arange(10))
    both.add(1, np.arange(5))
    refs, _ = both.sample(100, current_task_index=1)
    assert refs.size == 15 and set(unpack_refs(refs)[0].tolist()) == {0, 1}


def test_tasks_out_of_order_use_the_general_path():
    buf = ReplayBuffer(BufferConfig(replay_current_task=False), MemReader(), seed=0)
    buf.add(1, np.arange(4))
    buf.add(0, np.arange(6))
    refs, _ = buf.sample(100, current_task_index=1)
    assert sorted(unpack_refs(refs)[1].tolist()) == list(range(6)) and set(unpack_refs(refs)[0]) == {0}


def _drive(buf, steps, n=3, start_state=None):
    """Trainer-like loop: sample, train (nothing), add the new blocks, prefetch the next sample."""
    out = []
    for step in range(steps):
        task = step // 4
        refs, toks = buf.sample(n, task)
        out.append((refs.tolist(), toks.tolist()))
        buf.add(task, np.arange(step * 5, step * 5 + 5))
        buf.prefetch(n, (step + 1) // 4)
    return out


@pytest.mark.parametrize("policy", ["all", "reservoir"])
def test_state_round_trip_gives_identical_next_draws(policy, tmp_path):
    cfg = BufferConfig(policy=policy, capacity=12)
    a = ReplayBuffer(cfg, MemReader(), seed=7)
    _drive(a, 6)
    state = _save_load(a.state_dict())
    b = ReplayBuffer(cfg, MemReader(), seed=999)  # the seed is overridden by the state
    b.load_state_dict(state)
    assert np.array_equal(a.refs(), b.refs()) and b.n_seen == a.n_seen
    assert _drive(a, 8) == _drive(b, 8)


def test_state_dict_is_compact_for_consecutive_blocks():
    buf = ReplayBuffer(BufferConfig(), MemReader(), seed=0)
    for t in range(3):
        buf.add(t, np.arange(100_000))
    state = buf.state_dict()
    assert state["refs"]["values"].numel() == 3 and state["refs"]["run_lengths"].tolist() == [100_000] * 3
    other = ReplayBuffer(BufferConfig(), MemReader(), seed=0)
    other.load_state_dict(_save_load(state))
    assert np.array_equal(other.refs(), buf.refs())
    shuffled = ReplayBuffer(BufferConfig(), MemReader(), seed=0)
    shuffled.add(0, np.random.default_rng(0).permutation(1000))
    assert shuffled.state_dict()["refs"]["run_lengths"] is None  # raw when runs are not smaller


def test_memory_is_a_few_bytes_per_reference():
    buf = ReplayBuffer(BufferConfig(), MemReader(), seed=0)
    for t in range(5):
        for start in range(0, 200_000, 1000):
            buf.add(t, np.arange(start, start + 1000))
    assert len(buf) == 1_000_000
    assert buf._refs.dtype == np.int64 and buf._refs.nbytes <= 16 * len(buf)


@pytest.mark.parametrize("policy", ["all", "reservoir"])
def test_copy_storage_returns_the_same_tokens_as_references(policy, tmp_path):
    cfg_ref = BufferConfig(policy=policy, capacity=20)
    cfg_copy = BufferConfig(policy=policy, capacity=20, storage="copy")
    ref = ReplayBuffer(cfg_ref, MemReader(), seed=3)
    copy = ReplayBuffer(cfg_copy, None, seed=3, storage_dir=tmp_path)
    for t, (lo, hi) in enumerate([(0, 30), (30, 45), (45, 90)]):
        ids = np.arange(lo, hi)
        ref.add(t, ids)
        copy.add(t, ids, tokens=tokens_of(t, ids))
        for _ in range(3):
            r1, k1 = ref.sample(8, t)
            r2, k2 = copy.sample(8, t)
            assert np.array_equal(r1, r2) and np.array_equal(k1, k2) and k2.dtype == np.uint32
    assert (tmp_path / "replay-rank0.tokens").exists()
    copy.close()


def test_copy_checkpoint_stays_valid_after_training_goes_on(tmp_path):
    cfg = BufferConfig(policy="reservoir", capacity=10, storage="copy")
    buf = ReplayBuffer(cfg, None, seed=1, storage_dir=tmp_path)
    buf.add(0, np.arange(50), tokens=tokens_of(0, np.arange(50)))
    state = _save_load(buf.state_dict())
    expected = buf.sample(10, 0)
    # training goes on: the reservoir replaces slots (rows are appended, never overwritten)
    buf.add(1, np.arange(500), tokens=tokens_of(1, np.arange(500)))
    buf.close()
    resumed = ReplayBuffer(cfg, None, seed=1, storage_dir=tmp_path)
    resumed.load_state_dict(state)
    refs, toks = resumed.sample(10, 0)
    assert np.array_equal(refs, expected[0]) and np.array_equal(toks, expected[1])
    tasks, ids = unpack_refs(refs)
    assert np.array_equal(toks, tokens_of(0, ids))
    missing = ReplayBuffer(cfg, None, seed=1, storage_dir=tmp_path / "elsewhere")
    with pytest.raises(ValueError, match="missing or shorter"):
        missing.load_state_dict(state)


def test_copy_storage_needs_tokens_and_dir(tmp_path):
    with pytest.raises(ValueError, match="storage_dir"):
        ReplayBuffer(BufferConfig(storage="copy"), None, seed=0)
    buf = ReplayBuffer(BufferConfig(storage="copy"), None, seed=0, storage_dir=tmp_path)
    with pytest.raises(ValueError, match="needs the tokens"):
        buf.add(0, np.arange(3))
    with pytest.raises(ValueError, match=re.escape("[n_blocks=3, block_len]")):
        buf.add(0, np.arange(3), tokens=np.zeros((2, 4), dtype=np.uint16))


@pytest.mark.parametrize("policy", ["all", "reservoir"])
def test_prefetch_on_and_off_give_identical_draws(policy):
    cfg_off = BufferConfig(policy=policy, capacity=12)
    cfg_on = BufferConfig(policy=policy, capacity=12, prefetch=True)
    off = ReplayBuffer(cfg_off, MemReader(), seed=5)
    reader = MemReader()
    on = ReplayBuffer(cfg_on, reader, seed=5)
    # 12 steps across 3 tasks: at each task change the prefetched task index is already the new one
    assert _drive(off, 12) == _drive(on, 12)
    assert on._pending is not None  # the loop left a prefetched draw in flight
    # a checkpoint taken with a prefetch in flight equals one taken without prefetch
    s_on, s_off = on.state_dict(), off.state_dict()
    assert s_on["rng_sample"] == s_off["rng_sample"] and s_on["n_seen"] == s_off["n_seen"]
    # a prefetch that does not match the next call (other n, an add in between) is redrawn
    on.prefetch(3, 2)
    on.add(2, np.arange(1000, 1003))
    off.add(2, np.arange(1000, 1003))
    r_on, t_on = on.sample(4, 2)
    r_off, t_off = off.sample(4, 2)
    assert np.array_equal(r_on, r_off) and np.array_equal(t_on, t_off)
    on.prefetch(3, 2)
    assert [x.tolist() for x in on.sample(2, 2)] == [x.tolist() for x in off.sample(2, 2)]
    on.close()


class CountingReader(MemReader):
    """MemReader that also counts the blocks read."""

    def __init__(self):
        super().__init__()
        self.blocks = 0

    def read_blocks(self, task_index, block_ids):
        self.blocks += len(block_ids)
        return super().read_blocks(task_index, block_ids)


@pytest.mark.parametrize("prefetch", [False, True])
def test_a_window_reads_only_its_rows_of_the_same_draw(prefetch):
    """4 ranks of a batch of 8 whose last 5 rows are replayed: each draws the same 5 blocks, reads only the
    rows of its window, and together they read each drawn block once."""
    readers = [CountingReader() for _ in range(5)]
    whole, *ranks = [ReplayBuffer(BufferConfig(prefetch=prefetch), r, seed=3) for r in readers]
    for buf in [whole, *ranks]:
        buf.add(0, np.arange(40))
    windows = [(2 * r, 2 * r + 2, 8) for r in range(4)]  # batch rows [lo, hi) of 8; the draw is rows 3..7
    for step in range(3):
        if prefetch:
            for buf, window in zip(ranks, windows):
                buf.prefetch(5, 1, window)
        refs, tokens = whole.sample(5, 1)
        parts = [buf.sample(5, 1, window) for buf, window in zip(ranks, windows)]
        assert all(np.array_equal(r, refs) for r, _ in parts)  # the same draw everywhere
        assert [len(t) for _, t in parts] == [0, 1, 2, 2]  # rank 1 holds batch row 3 = the draw's row 0
        assert np.array_equal(np.concatenate([t for _, t in parts if len(t)]), tokens)
    assert sum(r.blocks for r in readers[1:]) == readers[0].blocks == 15
    with pytest.raises(ValueError, match=r"window=\(6, 9, 8\)"):
        ranks[0].sample(5, 1, (6, 9, 8))
    for buf in [whole, *ranks]:
        buf.close()


def test_prefetch_is_a_no_op_when_off():
    reader = MemReader()
    buf = ReplayBuffer(BufferConfig(), reader, seed=0)
    buf.add(0, np.arange(10))
    buf.prefetch(4, 0)
    assert buf._pending is None and reader.calls == 0


def test_ranks_draw_independent_reproducible_streams():
    def draws(seed, rank):
        buf = ReplayBuffer(BufferConfig(), MemReader(), seed=seed, rank=rank)
        buf.add(0, np.arange(1000))
        return [buf.sample(5, 0)[0].tolist() for _ in range(3)]

    assert draws(0, 0) == draws(0, 0)
    assert draws(0, 1) == draws(0, 1)
    assert draws(0, 0) != draws(0, 1)
    assert draws(0, 0) != draws(1, 0)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"policy": "fifo"}, "buffer.policy='fifo'"),
        ({"policy": "reservoir"}, "buffer.capacity=None"),
        ({"policy": "reservoir", "capacity": 0}, "buffer.capacity=0"),
        ({"storage": "disk"}, "buffer.storage='disk'"),
    ],
)
def test_config_validation(kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        BufferConfig(**kwargs)


def test_load_rejects_other_settings():
    a = ReplayBuffer(BufferConfig(policy="reservoir", capacity=5), MemReader(), seed=0)
    b = ReplayBuffer(BufferConfig(policy="reservoir", capacity=6), MemReader(), seed=0)
    with pytest.raises(ValueError, match="buffer.capacity=6"):
        b.load_state_dict(a.state_dict())


def test_task_layout_in_chunks_matches_a_whole_array_scan():
    refs = np.concatenate([pack_refs(0, np.arange(10)), pack_refs(2, np.arange(5)), pack_refs(3, np.arange(3))])
    for chunk in (1, 2, 4, 10, 1 << 24):
        layout = task_layout(refs, chunk)
        assert layout.monotone and layout.firsts == [(0, 0), (2, 10), (3, 15)]
        assert layout.counts == {0: 10, 2: 5, 3: 3}
    back = np.concatenate([pack_refs(1, np.arange(3)), pack_refs(0, np.arange(3))])
    for chunk in (2, 3, 1 << 24):
        layout = task_layout(back, chunk)
        assert (layout.monotone, layout.firsts, layout.counts) == (False, [], {0: 3, 1: 3})
    assert task_layout(np.zeros(0, dtype=np.int64)) == TaskLayout()
    far = pack_refs(MAX_TASK_INDEX, [1, 2])  # a task index far from the others: counted without bincount
    assert task_layout(np.concatenate([pack_refs(0, [5]), far]), 2).counts == {0: 1, MAX_TASK_INDEX: 2}


# ------------------------------------------------------------------- checkpoint encoding (chunked)


def _first_version_encode(a):
    """The encoder of the first version (whole-array passes), kept as the reference of the format."""
    n = a.shape[0]
    if n == 0:
        return {"values": torch.zeros(0, dtype=torch.int64), "run_lengths": None}
    starts_at = np.flatnonzero(np.diff(a) != 1) + 1
    if 2 * (starts_at.size + 1) >= n:
        return {"values": torch.from_numpy(a.copy()), "run_lengths": None}
    first = np.concatenate([[0], starts_at])
    lengths = np.diff(np.append(first, n))
    return {"values": torch.from_numpy(a[first].copy()), "run_lengths": torch.from_numpy(lengths.astype(np.int64))}


def _arrays():
    """(name, int64 array, whether every chunk-aligned prefix encodes like the whole)."""
    rng = np.random.default_rng(0)
    runs = np.concatenate([start + np.arange(length) for start, length in  # 40 runs of 1-4999 values
                           zip(rng.integers(0, 1 << 40, 40), rng.integers(1, 5000, 40))])
    tasks = np.concatenate([pack_refs(t, np.arange(30_000)) for t in range(4)])
    short = np.cumsum(rng.choice([1, 1, 1, 2], 30_000))  # runs of ~4 values: close to the raw/runs threshold
    mixed = np.concatenate([rng.permutation(20_000), 10**6 + np.arange(60_000)])  # first chunks have no runs
    extremes = np.array([0, 1, 2**63 - 2, 2**63 - 1, 0, 2**63 - 1])
    return [("shuffled", rng.permutation(100_000), True), ("sequential", np.arange(100_000), True),
            ("tasks in order", tasks, True), ("long runs", runs, True), ("short runs", short, False),
            ("no runs, then one", mixed, False), ("extremes", extremes, True), ("one", np.array([7]), True),
            ("empty", np.zeros(0), True)]


@pytest.mark.parametrize("chunk", [1, 3, 4099, None])
def test_encode_round_trips_and_matches_the_first_version(chunk):
    for name, a, same_as_whole in _arrays():
        a = np.asarray(a, dtype=np.int64)
        state = _save_load(encode_refs(a, chunk))  # plain tensors: loads with weights_only=True
        for read_chunk in (chunk, 5, None):
            assert np.array_equal(decode_refs(state, read_chunk), a), (name, chunk, read_chunk)
        first = _first_version_encode(a)
        assert np.array_equal(decode_refs(_save_load(first), chunk), a), name  # old checkpoints load
        if same_as_whole or chunk is None or chunk >= a.size:  # the same choice (and bytes) as the first version
            assert (state["run_lengths"] is None) == (first["run_lengths"] is None), (name, chunk)
            assert torch.equal(state["values"], first["values"]), (name, chunk)
            if first["run_lengths"] is not None:
                assert torch.equal(state["run_lengths"], first["run_lengths"]), (name, chunk)


def test_encode_picks_raw_when_the_first_chunks_have_no_runs():
    name, mixed, _ = _arrays()[5]
    assert name == "no runs, then one"
    assert _first_version_encode(mixed)["run_lengths"] is not None  # 20,001 runs for 80,000 values
    assert encode_refs(mixed, 4099)["run_lengths"] is None  # gave up after the first chunk: raw
    assert encode_refs(mixed)["run_lengths"] is not None  # one chunk: the first version's choice


@pytest.mark.parametrize("name", ["shuffled", "sequential", "tasks in order", "short runs", "no runs, then one"])
def test_encode_and_decode_need_o_chunk_memory_beyond_the_output(name):
    """Memory, not time: numpy reports its allocations to tracemalloc. The first version needed ~16
    bytes per value (a full diff, the list of run starts, a copy) beyond its output."""
    import tracemalloc

    a = np.asarray(next(arr for n, arr, _ in _arrays() if n == name), dtype=np.int64)
    a = np.concatenate([a] * max(1, 300_000 // a.size))  # a few hundred thousand values
    chunk = 4096
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        state = encode_refs(a, chunk)
        out = sum(t.numel() * 8 for t in state.values() if t is not None)
        encode_extra = tracemalloc.get_traced_memory()[1] - out
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        back = decode_refs(state, chunk)
        decode_extra = tracemalloc.get_traced_memory()[1] - before - back.nbytes
    finally:
        tracemalloc.stop()
    assert np.array_equal(back, a)
    assert encode_extra < 64 * chunk, (encode_extra, a.nbytes)  # ~14 bytes per chunk entry measured
    assert decode_extra < 64 * chunk, (decode_extra, a.nbytes)


@pytest.mark.parametrize("policy, order", [("all", "stream"), ("all", "sequential"), ("reservoir", "stream")])
def test_state_round_trip_at_a_few_hundred_thousand_refs(policy, order, monkeypatch):
    monkeypatch.setattr(mer.replay.refs, "CHUNK", 4099)  # many chunks; runs and tasks cross their boundaries
    cfg = BufferConfig(policy=policy, capacity=150_000, replay_current_task=False)
    rng = np.random.default_rng(0)
    a = ReplayBuffer(cfg, MemReader(), seed=11)
    for task in range(4):
        ids = rng.permutation(80_000) if order == "stream" else np.arange(80_000)
        for start in range(0, ids.size, 10_000):
            a.add(task, ids[start:start + 10_000])
    state = _save_load(a.state_dict())
    if order == "sequential":  # one run per task (task indices sit in the high bits)
        assert state["refs"]["values"].numel() == 4 and state["refs"]["run_lengths"].tolist() == [80_000] * 4
    else:
        assert state["refs"]["run_lengths"] is None
    b = ReplayBuffer(cfg, MemReader(), seed=0)
    b.load_state_dict(state)
    assert np.array_equal(a.refs(), b.refs()) and b.n_seen == a.n_seen and len(b) == len(a) > 100_000
    assert b._task_counts == a._task_counts == task_layout(a.refs()).counts
    for task in (1, 3, 4):
        assert b.n_eligible(task) == a.n_eligible(task) == int(((a.refs() >> 40) < task).sum())
    for n in (256, 7, 256):
        ra, ta = a.sample(n, 3)
        rb, tb = b.sample(n, 3)
        assert np.array_equal(ra, rb) and np.array_equal(ta, tb) and ra.size == n


# ------------------------------------------------------------- draws among scattered eligible slots


def _scattered_reservoir(seed=4, capacity=200):
    """A reservoir of task 0, then task 1 which replaced about half of its slots (scattered), current task 1,
    replay_current_task false: the eligible slots (task 0's) are not a prefix."""
    buf = ReplayBuffer(BufferConfig(policy="reservoir", capacity=capacity, replay_current_task=False),
                       MemReader(), seed=seed)
    buf.add(0, np.arange(capacity))
    buf.add(1, np.arange(capacity))
    eligible = np.flatnonzero((buf.refs() >> 40) == 0)
    assert buf._eligible_prefix(1) is None and buf.n_eligible(1) == eligible.size
    assert eligible.max() > eligible.size  # scattered, not a prefix
    return buf, eligible


@pytest.mark.parametrize("m, path", [(3, "rejection"), (5, "rejection"), (10, "exact")])
def test_draws_among_scattered_eligible_slots_are_uniform_chi_square(m, path):
    buf, eligible = _scattered_reservoir()
    size = eligible.size
    assert (size >= REJECTION_MIN_RATIO * m) == (path == "rejection")
    trials = 6000
    counts = {int(s): 0 for s in eligible}
    first = dict(counts)
    first_if_sorted = dict(counts)  # a biased sampler (sorted output) for the same check to reject
    for _ in range(trials):
        slots = buf._draw(m, 1)
        assert slots.size == m and len(set(slots.tolist())) == m
        for s in slots:
            counts[int(s)] += 1  # a KeyError is an ineligible slot
        first[int(slots[0])] += 1
        first_if_sorted[int(slots.min())] += 1
    observed = np.array(list(counts.values()))
    assert chisquare(observed).pvalue > 1e-3  # each eligible slot drawn trials * m / size times on average
    assert chisquare(np.array(list(first.values()))).pvalue > 1e-3  # the order within a draw is random too
    assert chisquare(np.array(list(first_if_sorted.values()))).pvalue < 1e-6  # the check has power
    refs, toks = buf.sample(m, 1)
    assert set(unpack_refs(refs)[0].tolist()) == {0} and np.array_equal(toks, tokens_of(0, unpack_refs(refs)[1]))


def test_rejection_draws_give_uniform_ordered_samples():
    """All ordered m-samples equally likely (not only each slot), also when the draw exhausts the eligible slots."""
    refs = pack_refs(1, np.arange(40))
    refs[[3, 17, 18, 30, 39]] = pack_refs(0, [3, 17, 18, 30, 39])  # 5 eligible (task 0) of 40
    rng = np.random.default_rng(0)
    for m, trials in ((2, 4000), (5, 12000)):
        seen = {}
        for _ in range(trials):
            draw = tuple(draw_by_rejection(rng, refs, 1, m, 5).tolist())
            seen[draw] = seen.get(draw, 0) + 1
        assert all(len(set(d)) == m and set(d) <= {3, 17, 18, 30, 39} for d in seen)
        assert len(seen) == math.perm(5, m)  # 20 ordered pairs, 120 orders of all five
        assert chisquare(np.array(list(seen.values()))).pvalue > 1e-3


def test_task_counts_stay_exact_through_reservoir_replacements():
    cfg = BufferConfig(policy="reservoir", capacity=300, replay_current_task=False)
    buf = ReplayBuffer(cfg, MemReader(), seed=2)
    for step, task in enumerate([0] * 5 + [1] * 20 + [0] * 3 + [2] * 30 + [5] * 2):  # a task also comes back
        buf.add(task, np.arange(step * 37, step * 37 + 37))
        assert buf._task_counts == task_layout(buf.refs()).counts
        for current in range(7):
            assert buf.n_eligible(current) == int(((buf.refs() >> 40) < current).sum())


def _drive_changing_n(buf, start, steps):
    """Trainer-like loop over tasks of 30 steps, alternating n between 16 (rejection while 256 blocks are
    eligible) and 64 (exact: a capacity of 500 never holds 16 * 64), with prefetch of the next step's draw."""
    out = []
    n_of = [16, 64]
    for step in range(start, start + steps):
        task = step // 30
        refs, toks = buf.sample(n_of[step % 2], task)
        out.append((refs.tolist(), toks.tolist()))
        buf.add(task, np.arange(step * 20, step * 20 + 20))
        buf.prefetch(n_of[(step + 1) % 2], (step + 1) // 30)
    return out


@pytest.mark.parametrize("prefetch", [False, True])
def test_reservoir_without_current_task_resumes_bit_identical(prefetch, monkeypatch):
    paths = {"rejection": 0, "exact": 0}

    def counted(path, draw):
        def wrapper(*args, **kwargs):
            paths[path] += 1
            return draw(*args, **kwargs)
        return wrapper

    monkeypatch.setattr(mer.replay.buffer, "draw_by_rejection", counted("rejection", mer.replay.buffer.draw_by_rejection))
    monkeypatch.setattr(ReplayBuffer, "_eligible_slots", counted("exact", ReplayBuffer._eligible_slots))
    cfg = BufferConfig(policy="reservoir", capacity=500, replay_current_task=False, prefetch=prefetch)
    a = ReplayBuffer(cfg, MemReader(), seed=3)
    twin = ReplayBuffer(cfg, MemReader(), seed=3)  # another rank: same seed (rank 0), same blocks added
    assert _drive_changing_n(a, 0, 70) == _drive_changing_n(twin, 0, 70)  # into the third task
    state = _save_load(a.state_dict())
    resumed = ReplayBuffer(cfg, MemReader(), seed=0)
    resumed.load_state_dict(state)
    assert resumed._task_counts == a._task_counts
    after = _drive_changing_n(a, 70, 60)
    assert after == _drive_changing_n(resumed, 70, 60) == _drive_changing_n(twin, 70, 60)
    assert all(len(refs) == 16 for refs, _ in after[::2])
    assert all(set(unpack_refs(np.array(refs, dtype=np.int64))[0].tolist()) <= set(range((70 + i) // 30))
               for i, (refs, _) in enumerate(after))
    assert paths["rejection"] > 50 and paths["exact"] > 50  # both ways of drawing were resumed
    for buf in (a, resumed, twin):
        buf.close()


@pytest.mark.parametrize("policy", ["all", "reservoir"])
def test_copy_storage_resumes_and_goes_on_adding(policy, tmp_path):
    cfg = BufferConfig(policy=policy, capacity=50, storage="copy", replay_current_task=False)
    a = ReplayBuffer(cfg, None, seed=6, storage_dir=tmp_path / "a")
    for task, (lo, hi) in enumerate([(0, 40), (40, 90)]):
        a.add(task, np.arange(lo, hi), tokens=tokens_of(task, np.arange(lo, hi)))
    state = _save_load(a.state_dict())  # flushes the token file
    (tmp_path / "b").mkdir()
    shutil.copy(tmp_path / "a" / "replay-rank0.tokens", tmp_path / "b")  # the resumed buffer appends to its own
    b = ReplayBuffer(cfg, None, seed=6, storage_dir=tmp_path / "b")
    b.load_state_dict(state)
    for step in range(6):
        ids = np.arange(100 + 10 * step, 110 + 10 * step)
        for buf in (a, b):
            buf.add(2, ids, tokens=tokens_of(2, ids))
        (ra, ta), (rb, tb) = a.sample(7, 2), b.sample(7, 2)
        assert np.array_equal(ra, rb) and np.array_equal(ta, tb) and ra.size == 7
        assert np.array_equal(ta, np.stack([tokens_of(int(t), [int(i)])[0] for t, i in zip(*unpack_refs(ra))]))
    a.close()
    b.close()
