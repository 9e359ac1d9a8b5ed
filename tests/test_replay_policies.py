"""Replay policies as classes (#21): the registry, the interface the buffer applies, and the worked example
`task_quota` (docs/replay_policies.md): exactly what it keeps, that draws are uniform over it, its checkpoint, and
the settings it refuses. `all` and `reservoir` are held to their old behaviour by tests/test_replay.py and, bit
for bit, by tests/test_layout_reference.py."""

from __future__ import annotations

import ast
import inspect
import io
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from scipy.stats import chisquare

import mer.replay.buffer
import mer.replay.policies.reservoir
from mer.replay.buffer import BufferConfig, ReplayBuffer, pack_refs, unpack_refs
from mer.replay.policies import POLICIES
from mer.replay.policies.keep_all import KeepAll
from mer.replay.policies.reservoir import Reservoir
from mer.replay.policies.task_quota import TaskQuota
from mer.replay.policy import NOTHING, Admission, Held, ReplayPolicy

REPO = Path(__file__).resolve().parents[1]


class Reader:
    """Tokens of block b of task t: [t, b] (uint16)."""

    def read_blocks(self, task_index, block_ids):
        ids = np.asarray(block_ids, dtype=np.int64)
        return np.stack([np.full(ids.size, task_index), ids], axis=1).astype(np.uint16)


def quota_buffer(capacity=10, seed=0, **kwargs):
    return ReplayBuffer(BufferConfig(policy="task_quota", capacity=capacity, **kwargs), Reader(), seed=seed)


def held(buf):
    """{task: sorted block ids held}."""
    tasks, ids = unpack_refs(buf.refs())
    return {int(t): sorted(ids[tasks == t].tolist()) for t in np.unique(tasks)}


def counts(buf):
    return {task: len(ids) for task, ids in held(buf).items()}


def _save_load(state):
    out = io.BytesIO()
    torch.save(state, out)
    out.seek(0)
    return torch.load(out, weights_only=True)


# --------------------------------------------------------------------------------------------- registry


def test_the_registry_maps_each_config_name_to_its_class():
    assert POLICIES == {"all": KeepAll, "reservoir": Reservoir, "task_quota": TaskQuota}
    assert all(issubclass(cls, ReplayPolicy) and cls.name == name for name, cls in POLICIES.items())
    for path in sorted((REPO / "conf" / "buffer").glob("*.yaml")):  # each conf/buffer file selects its namesake
        assert yaml.safe_load(path.read_text())["policy"] == path.stem
        assert path.stem in POLICIES


def test_the_buffer_holds_no_switch_on_policy_names():
    """No policy name is a string in the buffer's code (docstrings aside): what a name does lives in its class."""
    def strings(module):
        return {node.value for node in ast.walk(ast.parse(inspect.getsource(module)))
                if isinstance(node, ast.Constant) and isinstance(node.value, str)}

    assert strings(mer.replay.buffer) & {"all", "reservoir", "task_quota", *POLICIES} == set()
    assert "reservoir" in strings(mer.replay.policies.reservoir)  # the scan finds a name where it is


def test_a_new_policy_needs_no_edit_of_the_buffer(monkeypatch):
    """Registered in the dict only, a policy that keeps every other offered block runs in the unchanged buffer."""

    class EveryOther(ReplayPolicy):
        name = "every_other"

        def admit(self, held, task_index, k, rng):
            return Admission(np.arange(0, k, 2, dtype=np.int64), NOTHING, NOTHING)

    monkeypatch.setitem(POLICIES, "every_other", EveryOther)
    buf = ReplayBuffer(BufferConfig(policy="every_other"), Reader(), seed=0)
    buf.add(0, np.arange(10, 17))
    assert held(buf) == {0: [10, 12, 14, 16]} and buf.n_seen == 7
    refs, tokens = buf.sample(10, 0)
    ids = unpack_refs(refs)[1]
    assert sorted(ids.tolist()) == [10, 12, 14, 16] and np.array_equal(tokens[:, 1], ids)


def test_a_new_policy_file_is_registered_without_any_other_edit(tmp_path, monkeypatch):
    """One new file in the policies folder is found and registered under its name (the built-in ones listed
    first); a second policy of the same name is refused when the policies are read."""
    import sys
    import textwrap

    import mer.replay.policies as package

    (tmp_path / "fifo_probe.py").write_text(textwrap.dedent("""
        import numpy as np

        from mer.replay.policy import NOTHING, Admission, ReplayPolicy


        class FifoProbe(ReplayPolicy):
            name = "fifo_probe"

            def admit(self, held, task_index, k, rng):
                return Admission(np.arange(k, dtype=np.int64), NOTHING, NOTHING)
    """))
    monkeypatch.setattr(package, "__path__", [*package.__path__, str(tmp_path)])
    monkeypatch.delitem(sys.modules, "mer.replay.policies.fifo_probe", raising=False)
    found = package._discover()
    assert list(found) == ["all", "reservoir", "fifo_probe", "task_quota"]
    assert found["fifo_probe"].__name__ == "FifoProbe"
    (tmp_path / "fifo_twin.py").write_text("from mer.replay.policies.fifo_probe import FifoProbe\n\n\n"
                                           "class FifoTwin(FifoProbe.__base__):\n    name = 'fifo_probe'\n")
    with pytest.raises(ImportError, match="two replay policies are named 'fifo_probe'"):
        package._discover()
    for name in ("fifo_probe", "fifo_twin"):
        sys.modules.pop(f"mer.replay.policies.{name}", None)


def test_the_buffer_refuses_an_admission_its_policy_cannot_make(monkeypatch):
    class Broken(KeepAll):
        name = "broken"

        def admit(self, held, task_index, k, rng):  # append-only, yet replaces a slot
            return Admission(np.arange(k - 1, dtype=np.int64), np.array([k - 1]), np.array([0]))

    class Replacing(ReplayPolicy):
        name = "replacing"
        slots = np.zeros(2, dtype=np.int64)

        def admit(self, held, task_index, k, rng):  # 2 appended, then blocks 2 and 3 written over `slots`
            return Admission(np.arange(2, dtype=np.int64), np.array([2, 3]), self.slots)

    monkeypatch.setitem(POLICIES, "broken", Broken)
    monkeypatch.setitem(POLICIES, "replacing", Replacing)
    with pytest.raises(ValueError, match="append-only"):
        ReplayBuffer(BufferConfig(policy="broken"), Reader(), seed=0).add(0, np.arange(3))
    for slots in ([1, 2], [1, 1], [-1, 0]):  # slot 2 not held (2 are), slot 1 twice, a negative slot
        Replacing.slots = np.array(slots)
        with pytest.raises(ValueError, match=re.escape("replaced slots outside [0, 2) or twice")):
            ReplayBuffer(BufferConfig(policy="replacing"), Reader(), seed=0).add(0, np.arange(4))
    Replacing.slots = np.array([1, 0])
    buf = ReplayBuffer(BufferConfig(policy="replacing"), Reader(), seed=0)
    buf.add(0, np.arange(4))  # where it is valid it is applied
    assert buf.refs().tolist() == pack_refs(0, [3, 2]).tolist()


def test_the_policy_sees_the_held_blocks_read_only(monkeypatch):
    seen = []

    class Spy(KeepAll):
        name = "spy"

        def admit(self, held, task_index, k, rng):
            assert isinstance(held, Held)
            with pytest.raises(ValueError, match="read-only"):
                held.refs[0:1] = 7
            with pytest.raises(TypeError):
                held.counts[0] = 7
            seen.append((held.refs.tolist(), held.n_seen, dict(held.counts)))
            return super().admit(held, task_index, k, rng)

    monkeypatch.setitem(POLICIES, "spy", Spy)
    buf = ReplayBuffer(BufferConfig(policy="spy"), Reader(), seed=0)
    buf.add(0, np.arange(3))
    buf.add(1, np.arange(2))
    assert seen == [([], 0, {}), (pack_refs(0, np.arange(3)).tolist(), 3, {0: 3})]


# ------------------------------------------------------------------------------------ task_quota: what is kept


def test_task_quota_keeps_the_exact_shares():
    """capacity 10: each add's quota is 10 // (tasks held + the adding one)."""
    buf = quota_buffer(10)
    buf.add(0, np.arange(12))  # one task: quota 10, the first 10 offered are kept
    assert held(buf) == {0: list(range(10))} and len(buf) == 10 and buf.n_seen == 12
    before = set(held(buf)[0])
    buf.add(1, np.arange(100, 108))  # quota 5: 100..104 kept, each replacing a block of task 0
    assert counts(buf) == {0: 5, 1: 5} and held(buf)[1] == [100, 101, 102, 103, 104]
    assert set(held(buf)[0]) < before
    buf.add(2, np.arange(200, 203))  # quota 3: taken from 0 (tie: lowest index), then 1, then 0
    assert counts(buf) == {0: 3, 1: 4, 2: 3}
    buf.add(2, np.arange(203, 206))  # task 2 is at its quota: nothing kept
    assert counts(buf) == {0: 3, 1: 4, 2: 3} and held(buf)[2] == [200, 201, 202] and buf.n_seen == 26
    buf.add(3, np.array([300, 301, 302]))  # quota 2: taken from 1, then 0 (tie: lowest index)
    assert counts(buf) == {0: 2, 1: 3, 2: 3, 3: 2} and held(buf)[3] == [300, 301] and len(buf) == 10
    buf.add(0, np.array([50]))  # a task coming back: quota 2, it holds 2
    assert counts(buf) == {0: 2, 1: 3, 2: 3, 3: 2}


def test_task_quota_fills_free_slots_before_replacing():
    buf = quota_buffer(10)
    buf.add(0, np.arange(3))
    buf.add(1, np.arange(100, 110))  # quota 5, 7 slots free: appended
    assert buf.refs().tolist() == pack_refs(0, np.arange(3)).tolist() + pack_refs(1, np.arange(100, 105)).tolist()
    buf.add(2, np.arange(200, 210))  # quota 3, 2 slots free: 200 and 201 appended, 202 replaces one of task 1's
    assert counts(buf) == {0: 3, 1: 4, 2: 3} and held(buf)[0] == [0, 1, 2]
    assert unpack_refs(buf.refs()[8:])[1].tolist() == [200, 201]


def test_task_quota_evicts_uniformly_within_the_task():
    """Which 5 of task 0's 10 blocks survive task 1: each one in half of 4000 seeds (chi-square)."""
    survived = np.zeros(10)
    for seed in range(4000):
        buf = quota_buffer(10, seed=seed)
        buf.add(0, np.arange(10))
        buf.add(1, np.arange(100, 105))
        survived[held(buf)[0]] += 1
    assert survived.sum() == 4000 * 5
    assert chisquare(survived).pvalue > 1e-3


def test_task_quota_is_deterministic_for_a_seed():
    def run(seed):
        buf = quota_buffer(30, seed=seed)
        for task, k in [(0, 40), (1, 12), (2, 7), (3, 20)]:
            buf.add(task, np.arange(100 * task, 100 * task + k))
        return buf.refs().tolist()

    assert run(1) == run(1) and run(1) != run(2)


# ------------------------------------------------------------------------------------ task_quota: draws


@pytest.mark.parametrize("replay_current_task", [True, False])
def test_task_quota_draws_are_uniform_over_what_is_kept(replay_current_task):
    buf = quota_buffer(12, seed=3, replay_current_task=replay_current_task)
    buf.add(0, np.arange(20))
    buf.add(1, np.arange(100, 120))
    buf.add(2, np.arange(200, 203))  # the slots of each task scattered
    assert counts(buf) == {0: 4, 1: 5, 2: 3}
    kept = buf.refs()
    eligible = kept if replay_current_task else kept[(kept >> 40) < 2]
    assert buf.n_eligible(2) == eligible.size
    freq = {int(r): 0 for r in eligible}
    for _ in range(3000):
        refs, tokens = buf.sample(3, 2)
        assert len(set(refs.tolist())) == 3
        for r in refs:
            freq[int(r)] += 1  # a KeyError is a block not kept (or not eligible)
        assert np.array_equal(tokens[:, 1], unpack_refs(refs)[1])
    assert chisquare(np.array(list(freq.values()))).pvalue > 1e-3


# ------------------------------------------------------------------------------------ task_quota: checkpoint


def test_task_quota_state_round_trip_gives_identical_adds_and_draws():
    cfg = BufferConfig(policy="task_quota", capacity=20)
    a = ReplayBuffer(cfg, Reader(), seed=5)
    for task in range(3):
        a.add(task, np.arange(100 * task, 100 * task + 15))
        a.sample(4, task)
    state = _save_load(a.state_dict())
    reservoir = ReplayBuffer(BufferConfig(policy="reservoir", capacity=20), Reader(), seed=5)
    assert state.keys() == reservoir.state_dict().keys()  # the same checkpoint form for every policy
    assert state["policy"] == "task_quota"
    b = ReplayBuffer(cfg, Reader(), seed=999)  # the seed is overridden by the state
    b.load_state_dict(state)
    assert np.array_equal(a.refs(), b.refs()) and b.n_seen == a.n_seen == 45
    for buf in (a, b):  # task 3 evicts (draws from the admission generator), then samples
        buf.add(3, np.arange(300, 310))
    assert np.array_equal(a.refs(), b.refs()) and counts(a) == {0: 5, 1: 5, 2: 5, 3: 5}
    for task in (3, 4):
        ra, ta = a.sample(6, task)
        rb, tb = b.sample(6, task)
        assert np.array_equal(ra, rb) and np.array_equal(ta, tb)


def test_a_checkpoint_of_another_policy_is_refused():
    reservoir = ReplayBuffer(BufferConfig(policy="reservoir", capacity=10), Reader(), seed=0)
    with pytest.raises(ValueError, match="buffer.policy='task_quota' but the checkpoint was written with 'reservoir'"):
        quota_buffer(10).load_state_dict(reservoir.state_dict())


# ------------------------------------------------------------------------------------ settings


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"policy": "task_quota"}, "buffer.capacity=None: policy 'task_quota' needs a positive number of blocks, "
                               "e.g. buffer.capacity=100000"),
    ({"policy": "task_quota", "capacity": 0}, "buffer.capacity=0: policy 'task_quota' needs a positive number"),
    ({"policy": "fifo"}, "buffer.policy='fifo': choose one of 'all', 'reservoir', 'task_quota'"),
])
def test_settings_a_policy_cannot_use_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        BufferConfig(**kwargs)


def test_a_capacity_takes_effect_with_task_quota_and_is_refused_with_all():
    from mer.config.run_config import RunConfig

    RunConfig(buffer=BufferConfig(policy="task_quota", capacity=64))
    with pytest.raises(ValueError, match="buffer.capacity=64 has no effect with buffer.policy=all"):
        RunConfig(buffer=BufferConfig(policy="all", capacity=64))


def test_task_quota_that_could_not_keep_every_task_or_fill_a_batch_is_refused():
    """A quota of capacity // tasks = 0 blocks would never keep the later tasks; a capacity below one batch's
    replayed rows would give short replay batches: both refused before any work, naming the fix."""
    from mer.config.run_config import RunConfig
    from mer.optim.schedule import OptimConfig

    RunConfig(buffer=BufferConfig(policy="task_quota", capacity=8))  # 5 tasks, batch 32 at alpha 0.25: 8 replayed
    with pytest.raises(ValueError, match=r"buffer.capacity=4 is smaller than the 5 tasks.*use buffer.capacity >= 5"):
        RunConfig(buffer=BufferConfig(policy="task_quota", capacity=4), optim=OptimConfig(batch_size=8))
    with pytest.raises(ValueError, match="buffer.capacity=6 is smaller than the 16 replayed sequences of one batch"):
        RunConfig(alpha=0.5, buffer=BufferConfig(policy="task_quota", capacity=6))


def test_buffer_task_quota_selects_the_policy_from_the_command_line_config():
    from hydra import compose, initialize_config_module

    from mer.config.run_config import RunConfig, register_configs, to_dataclass
    from sweeps.plugins import register_hydra_plugins

    register_configs()
    register_hydra_plugins()
    with initialize_config_module(config_module="mer.conf", version_base="1.3"):
        composed = compose("config", overrides=["buffer=task_quota", "buffer.capacity=512"])
    cfg = to_dataclass(composed, RunConfig)
    assert (cfg.buffer.policy, cfg.buffer.capacity, cfg.buffer.storage) == ("task_quota", 512, "reference")
    assert isinstance(ReplayBuffer(cfg.buffer, Reader(), seed=0).policy, TaskQuota)


def test_the_docs_show_the_quota_policy_as_it_is():
    """docs/replay_policies.md shows `TaskQuota.admit` verbatim, and the config file as it is."""
    doc = (REPO / "docs" / "replay_policies.md").read_text()
    source = (REPO / "mer" / "replay" / "policies" / "task_quota.py").read_text()
    shown = doc.rsplit("    def admit(", 1)[1].split("```", 1)[0]  # the last one: the example
    assert "    def admit(" + shown in source
    config = (REPO / "conf" / "buffer" / "task_quota.yaml").read_text()
    assert config.split("\n", 1)[1] in doc  # all but the comment line
