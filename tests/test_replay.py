import io
import re

import numpy as np
import pytest
import torch
from scipy.stats import chisquare

from mer.replay import BlockReader, BufferConfig, ReplayBuffer, pack_refs, unpack_refs

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
    from mer.replay import _task_layout, pack_refs

    refs = np.concatenate([pack_refs(0, np.arange(10)), pack_refs(2, np.arange(5)), pack_refs(3, np.arange(3))])
    for chunk in (1, 2, 4, 10, 1 << 24):
        assert _task_layout(refs, chunk) == (3, True, [(0, 0), (2, 10), (3, 15)])
    back = np.concatenate([pack_refs(1, np.arange(3)), pack_refs(0, np.arange(3))])
    assert _task_layout(back, 2)[:2] == (1, False)
    assert _task_layout(np.zeros(0, dtype=np.int64)) == (-1, True, [])
