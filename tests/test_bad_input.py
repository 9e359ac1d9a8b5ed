"""Bad input, case by case: every case gets a clear message naming the key or file, and nothing already written
changes (the runs and data folders are snapshotted before and compared after: every file's size and sha256).

Configs go through Hydra's compose API and `to_dataclass`, as `python -m mer.run` composes them; corpora through
`prepare_data`; run directories and checkpoints through `run_training`; Optuna storages through the sweeper's own
`_open_study`. Damaged files (token shards, shard manifests, the cached tokenizer, checkpoint files and their
manifest, metrics.jsonl, config.json, the run lock) are made in copies of one real checkpointed run and its data
cache, and each refusal must name the file and its fix. A handful of cases run the real command line: exit code
2, one message, no traceback.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------------------------- helpers
def snapshot(*roots: Path) -> dict[str, tuple[int, str]]:
    """path -> (size, sha256) of every file (and '<dir>' for every folder) under the roots."""
    found: dict[str, tuple[int, str]] = {}
    for root in roots:
        if not root.exists():
            continue
        for path in sorted(root.rglob("*")):
            if path.is_dir():
                found[str(path)] = (-1, "<dir>")
            elif path.is_file():
                found[str(path)] = (path.stat().st_size, hashlib.sha256(path.read_bytes()).hexdigest())
            else:
                found[str(path)] = (-2, os.readlink(path) if path.is_symlink() else "<other>")
    return found


def assert_unchanged(before: dict, after: dict, new_allowed: bool = False) -> None:
    """Every file and folder that existed is still there with the same size and sha256; with `new_allowed`,
    new entries may appear (a cache entry such as the data cache's lock file), else none."""
    changed = {path: (was, after.get(path)) for path, was in before.items() if after.get(path) != was}
    assert not changed, changed
    if not new_allowed:
        assert set(after) == set(before), sorted(set(after) - set(before))


@pytest.fixture
def written(tmp_path) -> tuple[Path, Path]:
    """A runs folder holding a finished-looking run and a data folder holding a cache entry, both real files."""
    runs, data = tmp_path / "runs", tmp_path / "data"
    earlier = runs / "earlier"
    earlier.mkdir(parents=True)
    (earlier / "summary.json").write_text(json.dumps({"status": "completed", "run_name": "earlier"}))
    (earlier / "metrics.jsonl").write_text('{"event": "eval", "step": 0}\n')
    (data / "tokenizers" / "abc").mkdir(parents=True)
    (data / "tokenizers" / "abc" / "tokenizer.json").write_text("{}")
    return runs, data


def compose(overrides: list[str]):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module

    from mer.config.run_config import register_configs
    from sweeps.plugins import register_hydra_plugins

    register_configs()
    register_hydra_plugins()
    with initialize_config_module(config_module="mer.conf", version_base="1.3"):
        return hydra_compose("config", overrides=overrides)


def config_refusal(overrides: list[str]) -> str:
    """The message that refuses `overrides`: Hydra's composition error or the dataclasses' check."""
    from hydra.errors import HydraException

    from mer.config.run_config import RunConfig, to_dataclass

    try:
        cfg = compose(overrides)
    except HydraException as error:
        return f"{error}\n{error.__cause__ or ''}"
    with pytest.raises(ValueError) as refusal:
        to_dataclass(cfg, RunConfig)
    return str(refusal.value)


# ------------------------------------------------------------------------------------------------- configs
# (overrides, what the message must say: the key, and for a typo the closest valid key)
CONFIG_CASES = [
    # unknown keys, also added with +
    (["+foo=1"], ["unknown config key 'foo'"]),
    (["+optim.lrr=1"], ["unknown config key 'optim.lrr'", "Did you mean 'optim.lr'?"]),
    (["+lr=0.1"], ["unknown config key 'lr'", "Did you mean 'optim.lr'?"]),
    (["+sed=3"], ["unknown config key 'sed'", "Did you mean 'seed'?"]),
    (["+data.tokenizer.vocab=5"], ["'data.tokenizer.vocab'", "Did you mean 'data.tokenizer.vocab_size'?"]),
    (["+model.foo.bar=1"], ["unknown config key 'model.foo'"]),
    (["+data.tasks.0.nme=x"], ["unknown config key 'data.tasks.0.nme'", "Did you mean 'data.tasks.0.name'?"]),
    (["+eval.every_n=5"], ["unknown config key 'eval.every_n'", "Did you mean 'eval.every'?"]),
    (["foo=1"], ["Could not override 'foo'"]),
    # bad types and missing group options (Hydra's own errors)
    (["alpha=abc"], ["alpha=abc", "could not be converted to Float"]),
    (["optim.batch_size=1.5"], ["optim.batch_size", "Integer"]),
    (["compile=maybe"], ["compile=maybe", "not a valid bool"]),
    (["model=nope"], ["Could not find 'model/nope'"]),
    (["buffer=fifo"], ["Could not find 'buffer/fifo'"]),
    # ranges of the run
    (["seed=-1"], ["seed=-1 must be an integer in [0, 2**63)"]),
    ([f"seed={2**63}"], [f"seed={2**63} must be an integer in [0, 2**63)"]),
    (["alpha=1.0"], ["alpha=1.0 must be in [0, 1)"]),
    (["alpha=-0.1"], ["alpha=-0.1 must be in [0, 1)"]),
    (["alpha=nan"], ["alpha=nan must be in [0, 1)"]),
    (["alpha=0.99"], ["alpha=0.99 with optim.batch_size=16", "new sequences per step"]),
    (["k=-1"], ["k=-1 must be >= 0"]),
    (["k=100"], ["k=100 cannot fire"]),
    (["eps=0"], ["eps=0.0 must be in (0, 1]"]),
    (["eps=1.5"], ["eps=1.5 must be in (0, 1]"]),
    (["checkpoint_every=0"], ["checkpoint_every=0 must be >= 1"]),
    (["log_every=-5"], ["log_every=-5 must be >= 1"]),
    (["threads=0"], ["threads=0 must be >= 1"]),
    (["device=tpu"], ["device='tpu'"]),
    (["precision=fp16"], ["precision='fp16'"]),
    (["parallel=zero"], ["parallel='zero'"]),
    (["peak_flops=0"], ["peak_flops=0.0 must be > 0"]),
    (["peak_flops=inf"], ["peak_flops=inf must be > 0"]),
    # evaluation
    (["eval.every=0"], ["eval.every=0 must be >= 1"]),
    (["eval.batch_size=0"], ["eval.batch_size=0 must be >= 1"]),
    (["eval.context=0"], ["eval.context=0 must be >= 1"]),
    (["eval.stride=0"], ["eval.stride=0 must be >= 1"]),
    (["eval.context=16", "eval.stride=32"], ["eval.stride=32 is larger than eval.context=16"]),
    (["eval.context=4096"], ["eval.context=4096 is longer than model.seq_len=128"]),
    (["eval.downstream_limit=5"], ["eval.downstream_limit and eval.downstream_include apply to eval.downstream"]),
    # model shape
    (["model.n_layer=0"], ["model.n_layer=0: must be a positive integer"]),
    (["model.seq_len=-8"], ["model.seq_len=-8: must be a positive integer"]),
    (["model.n_head=3"], ["model.n_head=3: d_model=128 is not divisible by it"]),
    (["model.d_model=96", "model.n_head=32"], ["head dim d_model/n_head=3 is odd"]),
    (["model.n_kv_head=3"], ["model.n_kv_head=3: must be a positive divisor of n_head=4"]),
    (["model.rope_theta=0"], ["model.rope_theta=0.0: must be > 0"]),
    (["model.init_std=-1"], ["model.init_std=-1.0: must be > 0"]),
    (["model.norm_eps=inf"], ["model.norm_eps=inf: must be > 0"]),
    (["model.name=gigantic"], ["unknown model size 'gigantic'"]),
    (["model.init_from=/nonexistent/model"], ["/nonexistent/model"]),
    # optimizer
    (["optim.lr=0"], ["optim.lr=0.0: must be > 0"]),
    (["optim.lr=inf"], ["optim.lr=inf: must be > 0"]),
    (["optim.min_lr=1"], ["optim.min_lr=1.0: must be in [0, lr=0.003]"]),
    (["optim.betas=[0.9,1.0]"], ["optim.betas=(0.9, 1.0): need two values in [0, 1)"]),
    (["optim.adam_eps=0"], ["optim.adam_eps=0.0: must be > 0"]),
    (["optim.weight_decay=-0.1"], ["optim.weight_decay=-0.1: must be >= 0"]),
    (["optim.grad_clip=-1"], ["optim.grad_clip=-1.0: must be >= 0"]),
    (["optim.grad_clip=inf"], ["optim.grad_clip=inf: must be >= 0"]),
    (["optim.warmup_fraction=1"], ["optim.warmup_fraction=1.0: must be in [0, 1)"]),
    (["optim.batch_size=0"], ["optim.batch_size=0: must be a positive integer"]),
    (["optim.grad_accum=3"], ["optim.grad_accum=3: batch_size=16 is not divisible by it"]),
    # replay buffer
    (["buffer.policy=fifo"], ["buffer.policy='fifo'"]),
    (["buffer.storage=disk"], ["buffer.storage='disk'"]),
    (["buffer.capacity=100"], ["buffer.capacity=100 has no effect with buffer.policy=all"]),
    (["buffer.capacity=-3"], ["buffer.capacity=-3: must be a positive number of blocks"]),
    (["buffer=reservoir", "buffer.capacity=0"], ["buffer.capacity=0: policy 'reservoir' needs a positive number"]),
    (["buffer=reservoir", "buffer.capacity=2"], ["buffer.capacity=2 is smaller than the 4 replayed sequences"]),
    # data
    (["data.budget_tokens=0"], ["data.budget_tokens=0 must be >= 1"]),
    (["data.budget_tokens=null"], ["set exactly one of data.budget_tokens and data.budget_steps"]),
    (["data.budget_steps=10"], ["set exactly one of data.budget_tokens and data.budget_steps"]),
    (["data.budget_tokens=null", "data.budget_steps=0"], ["data.budget_steps=0 must be >= 1"]),
    (["data.eval_tokens=1"], ["data.eval_tokens=1 must be >= 2"]),
    (["data.tasks=[]"], ["data.tasks is empty"]),
    (["data.tasks=[{name:en},{name:en}]"], ["duplicate task names ['en', 'en']"]),
    (["data.tasks=[{name:'e n'}]"], ["task name 'e n' must be non-empty letters"]),
    (["data.tasks=[{name:en,source:web}]"], ["data.tasks[en].source='web' is unknown"]),
    (["data.tasks=[{name:en,val_fraction:0.6}]"], ["data.tasks[en].val_fraction=0.6 must be in (0, 0.5)"]),
    (["data.tasks=[{name:en,source:files}]"], ["data.tasks[en]: source 'files' needs train_files"]),
    (["data.tasks=[{name:en,source:tokens,train_files:[a.bin]}]"], ["source 'tokens' needs exactly one val_files"]),
    (["data.tasks=[{name:en,max_train_documents:0}]"], ["data.tasks[en].max_train_documents must be >= 1"]),
    (["data.tasks=[{name:en,budget_tokens:0}]"], ["data.tasks[en].budget_tokens must be >= 1"]),
    (["data.tasks=[{name:en,decode_errors:ignore}]"], ["data.tasks[en].decode_errors='ignore'"]),
    (["data.tasks=[{name:en,token_dtype:int8}]"], ["data.tasks[en].token_dtype='int8'"]),
    (["data.tokenizer.vocab_size=100"], ["data.tokenizer.vocab_size=100 must be at least 257"]),
    (["data.tokenizer.train_chars_per_task=10"], ["data.tokenizer.train_chars_per_task=10 is too small"]),
    (["data.tokenizer.min_frequency=0"], ["data.tokenizer.min_frequency must be >= 1"]),
    (["data.budget_tokens=null", "data.budget_steps=5", "data.tasks=[{name:en,budget_tokens:9}]"],
     ["is set together with a per-task budget_tokens"]),
]


@pytest.mark.parametrize(("overrides", "expected"), CONFIG_CASES, ids=[" ".join(c[0]) for c in CONFIG_CASES])
def test_bad_config_is_refused_with_the_key_named(overrides, expected, written):
    runs, data = written
    before = snapshot(runs, data)
    message = config_refusal([f"runs_dir={runs}", f"data.data_dir={data}", *overrides])
    for part in expected:
        assert part in message, message
    assert_unchanged(before, snapshot(runs, data))


@pytest.mark.parametrize("overrides", [["+sweep=paper_grid"], ["+experiment=cpu_paper"],
                                       ["+sweep=replay_vs_scale_quick"], ["+sweep=optuna_mer"]])
def test_config_group_appends_stay_valid(overrides):
    """`+sweep=<preset>` and `+experiment=<name>` select configs; they add no key and are not refused."""
    from mer.config.run_config import RunConfig, to_dataclass

    assert isinstance(to_dataclass(compose(overrides), RunConfig), RunConfig)


# ------------------------------------------------------------------------------------------------- corpora
def files_task(name: str = "en", **fields):
    from mer.data.config import TaskConfig

    return TaskConfig(name=name, source="files", **fields)


def prepare_refusal(data: Path, tasks, **tokenizer) -> str:
    from mer.data.config import DataConfig, TokenizerConfig
    from mer.data.corpus import DataError
    from mer.data.pipeline import prepare_data

    cfg = DataConfig(tasks=tasks, data_dir=str(data),
                     tokenizer=TokenizerConfig(vocab_size=300, train_chars_per_task=10_000, **tokenizer))
    with pytest.raises(DataError) as refusal:
        prepare_data(cfg)
    return str(refusal.value)


def _bad_corpus(tmp: Path, case: str) -> tuple[dict, list[str]]:
    """(TaskConfig fields, what the message must say) of one corpus case, its files written under tmp."""
    good = tmp / "good.txt"
    good.write_text("\n\n".join(f"Paragraph {i} of plain English text for the test." for i in range(200)))
    if case == "missing train file":
        return {"train_files": [str(tmp / "nope.txt")]}, [str(tmp / "nope.txt"), "matches no file"]
    if case == "empty folder":
        (tmp / "empty").mkdir()
        return {"train_files": [str(tmp / "empty")]}, [str(tmp / "empty"), "matches no file"]
    if case == "glob matching nothing":
        return {"train_files": [str(tmp / "*.jsonl")]}, ["*.jsonl", "matches no file"]
    if case == "dangling symlink":
        (tmp / "link.txt").symlink_to(tmp / "gone.txt")
        return {"train_files": [str(tmp / "link.txt")]}, [str(tmp / "link.txt"), "matches no file"]
    if case == "unknown file type":
        (tmp / "book.docx").write_bytes(b"PK\x03\x04")
        return {"train_files": [str(tmp / "book.docx")]}, ["book.docx", "unknown file type"]
    if case == "missing val file":
        return ({"train_files": [str(good)], "val_files": [str(tmp / "val.txt")]},
                [str(tmp / "val.txt"), "val_files"])
    if case == "invalid JSON line":
        path = tmp / "bad.jsonl"
        path.write_text('{"text": "fine"}\n{"text": broken\n')
        return {"train_files": [str(path)]}, [f"{path}:2", "not valid JSON"]
    if case == "JSONL without the text field":
        path = tmp / "other.jsonl"
        path.write_text('{"body": "text under another name"}\n')
        return {"train_files": [str(path)]}, [f"{path}:1", "no field 'text'"]
    if case == "truncated gzip":
        path = tmp / "cut.txt.gz"
        path.write_bytes(gzip.compress(good.read_bytes())[:60])
        return {"train_files": [str(path)]}, [str(path)]
    if case == "not UTF-8":
        path = tmp / "latin1.txt"
        path.write_bytes("Caf\xe9 au lait\n\n".encode("latin-1") * 50)
        return {"train_files": [str(path)]}, [str(path), "not valid utf-8", "decode_errors=replace"]
    if case == "corrupt Parquet":
        path = tmp / "cut.parquet"
        path.write_bytes(os.urandom(300))
        return {"train_files": [str(path)]}, [str(path), "cannot read as Parquet"]
    if case == "Parquet without the text column":
        import pyarrow as pa
        import pyarrow.parquet as pq

        path = tmp / "cols.parquet"
        pq.write_table(pa.table({"body": ["some text"] * 10}), path)
        return {"train_files": [str(path)]}, [str(path), "no column 'text'"]
    if case == "empty validation file":
        val = tmp / "val.txt"
        val.write_text("")
        return {"train_files": [str(good)], "val_files": [str(val)]}, ["validation split is empty"]
    raise AssertionError(case)


CORPUS_CASES = ["missing train file", "empty folder", "glob matching nothing", "dangling symlink",
                "unknown file type", "missing val file", "invalid JSON line", "JSONL without the text field",
                "truncated gzip", "not UTF-8", "corrupt Parquet", "Parquet without the text column",
                "empty validation file"]


@pytest.mark.parametrize("case", CORPUS_CASES)
def test_bad_corpus_is_refused_with_the_file_named(case, written, tmp_path):
    runs, data = written
    corpus_dir = tmp_path / "corpus"
    corpus_dir.mkdir()
    fields, expected = _bad_corpus(corpus_dir, case)
    before = snapshot(runs, data, corpus_dir)
    message = prepare_refusal(data, [files_task(**fields)])
    for part in expected:
        assert part.lower() in message.lower(), message
    # A file's content is read while the tokenizer trains: its cache lock (or, with a good training text, the
    # tokenizer itself) may be new; nothing that was there changes.
    assert_unchanged(before, snapshot(runs, data, corpus_dir), new_allowed=True)


def test_pretokenized_tasks_without_their_tokenizer_are_refused(written):
    runs, data = written
    before = snapshot(runs, data)
    from mer.data.config import TaskConfig

    task = TaskConfig(name="en", source="tokens", train_files=["/x/train.bin"], val_files=["/x/val.bin"])
    assert "set data.tokenizer.path" in prepare_refusal(data, [task])
    assert_unchanged(before, snapshot(runs, data))


@pytest.mark.parametrize("case", ["not a directory", "no tokenizer files"])
def test_a_bad_tokenizer_path_is_refused_with_the_path_named(case, written, tmp_path):
    runs, data = written
    path = tmp_path / "tok"
    if case == "not a directory":
        path.write_text("not a tokenizer")
    else:
        path.mkdir()
        (path / "README.md").write_text("no tokenizer here")
    before = snapshot(runs, data, path)
    corpus = tmp_path / "good.txt"
    corpus.write_text("\n\n".join(f"Paragraph {i} of text." for i in range(100)))
    message = prepare_refusal(data, [files_task(train_files=[str(corpus)])], path=str(path))
    assert str(path) in message
    assert_unchanged(before, snapshot(runs, data, path))


# ------------------------------------------------------------------------------------------------- run dirs
@pytest.fixture
def tiny_cfg(small_bible, tmp_path):
    import dataclasses

    from mer_testing import tiny_run_config

    cfg = tiny_run_config(small_bible[0], tmp_path / "runs")
    return dataclasses.replace(cfg, device="cpu")


def _run_refusal(cfg, run_dir: Path, resolved: dict) -> str:
    from mer.data.corpus import DataError
    from mer.launch.runner import RunConfigMismatch, run_training

    with pytest.raises((RunConfigMismatch, DataError)) as refusal:
        run_training(cfg, run_dir.name, resolved)
    return str(refusal.value)


@pytest.mark.parametrize("case", ["other config", "other world size", "other parallel"])
def test_a_run_directory_that_does_not_match_is_refused_untouched(case, tiny_cfg, small_bible):
    """The run directory holds a run made differently: the relaunch is refused before it writes anything."""
    run_dir = Path(tiny_cfg.runs_dir) / "run"
    checkpoint = run_dir / "checkpoint"
    checkpoint.mkdir(parents=True)
    (checkpoint / "state.pt").write_bytes(b"a checkpoint that must stay as it is")
    resolved = {"alpha": 0.25, "k": 0}
    (run_dir / "config.json").write_text(json.dumps({"alpha": 0.5, "k": 0} if case == "other config" else resolved))
    summary = {"status": "running", "world_size": 2 if case == "other world size" else 1,
               "sharded": case == "other parallel"}
    (run_dir / "summary.json").write_text(json.dumps(summary))
    data_dir = Path(small_bible[0].data_dir)
    before = snapshot(run_dir.parent, data_dir)
    message = _run_refusal(tiny_cfg, run_dir, resolved)
    assert str(run_dir) in message
    expected = {"other config": "holds a run with a different config",
                "other world size": "holds a checkpoint written by 2 processes",
                "other parallel": "holds a checkpoint written with parallel=fsdp"}[case]
    assert expected in message, message
    assert_unchanged(before, snapshot(run_dir.parent, data_dir))


# ------------------------------------------------------------------------------------------------- damaged files
# The integrity checks (docs/run_directory.md, "What is verified when"): every damaged file of a real run and a
# real data cache is refused before any training, naming the file and a fix that works (`python -m
# mer.start_over RUN_DIR` or `rm -r <folder>`; tests/test_integrity_*.py run each fix), and nothing changes.
@pytest.fixture(scope="module")
def checkpointed(small_bible, tmp_path_factory):
    """One run stopped after 5 of its 6 steps (checkpoints at step 2 and 4): (its config, its runs folder).

    Made once; each case damages a private copy (`damaged_copy`)."""
    import dataclasses

    import torch
    from mer_testing import tiny_run_config

    from mer.launch.runner import run_training
    from mer.training.trainer import Trainer

    data = dataclasses.replace(small_bible[0], tasks=small_bible[0].tasks[:2])
    runs = tmp_path_factory.mktemp("checkpointed") / "runs"
    cfg = tiny_run_config(data, runs, budget_tokens=512, checkpoint_every=2, log_every=1, peak_flops=1e12)
    original, calls = Trainer.train_step, {"n": 0}

    def killed_after_five_steps(self, task):
        if calls["n"] == 5:
            raise KeyboardInterrupt("killed")  # no checkpoint at the kill, like kill -9 mid-task
        calls["n"] += 1
        return original(self, task)

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny runs on shared cores: more threads only make them slower
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Trainer, "train_step", killed_after_five_steps)
        with pytest.raises(KeyboardInterrupt):
            run_training(cfg, "run", _resolved(cfg))
    torch.set_num_threads(threads)
    assert (runs / "run" / "checkpoint" / "manifest.json").is_file()
    return cfg, runs


def _resolved(cfg) -> dict:
    import dataclasses

    return json.loads(json.dumps(dataclasses.asdict(cfg), default=str))


@pytest.fixture
def damaged_copy(checkpointed, tmp_path):
    """A private copy of the checkpointed run and of its data cache: (config pointing at them, run dir, data dir)."""
    import dataclasses
    import shutil

    cfg, runs = checkpointed
    shutil.copytree(runs, tmp_path / "runs")
    shutil.copytree(cfg.data.data_dir, tmp_path / "data")
    cfg = dataclasses.replace(cfg, runs_dir=str(tmp_path / "runs"),
                              data=dataclasses.replace(cfg.data, data_dir=str(tmp_path / "data")))
    return cfg, tmp_path / "runs" / "run", tmp_path / "data"


def _flip_bits(path: Path, offsets: list[int]) -> None:
    data = bytearray(path.read_bytes())
    for offset in offsets:
        data[offset] ^= 0x10
    path.write_bytes(bytes(data))


def _truncate(path: Path) -> None:
    with open(path, "r+b") as handle:
        handle.truncate(path.stat().st_size // 2)


def _damage_data(cfg, case: str) -> tuple[Path, Path, list[str]]:
    """Damage the data cache of the run's tasks: (the damaged file, the folder the fix removes, what the message
    must say)."""
    from mer.data.pipeline import prepare_data

    prepared = prepare_data(cfg.data)  # the cache is complete: this only finds (and checks) the run's files
    shard = prepared.shards[0].path("train")
    if case == "shard zeroed at the same size":
        shard.write_bytes(bytes(shard.stat().st_size))
        return shard, shard.parent, ["does not match", "its sha256 is"]
    if case == "random bytes in a shard":
        with open(shard, "r+b") as handle:
            handle.seek(shard.stat().st_size // 2)
            handle.write(os.urandom(64))
        return shard, shard.parent, ["does not match", "its sha256 is"]
    if case == "shard truncated":
        _truncate(shard)
        return shard, shard.parent, ["has the wrong size"]
    manifest = shard.parent / "manifest.json"
    if case == "shard manifest deleted":
        manifest.unlink()
        return shard.parent, shard.parent, ["has no manifest.json"]
    if case == "shard manifest not JSON":
        manifest.write_text(manifest.read_text()[:-20] + ", oops")
        return manifest, shard.parent, ["is corrupt"]
    tokenizer = prepared.tokenizer_dir / "tokenizer.json"
    if case == "tokenizer.json deleted":
        tokenizer.unlink()
        return tokenizer, tokenizer.parent, ["is missing"]
    if case == "tokenizer.json changed":
        tokenizer.write_text(tokenizer.read_text().replace('"<|endoftext|>"', '"<|end|>"'))
        return tokenizer, tokenizer.parent, ["changed since the tokenizer was trained"]
    raise AssertionError(case)


DATA_DAMAGE_CASES = ["shard zeroed at the same size", "random bytes in a shard", "shard truncated",
                     "shard manifest deleted", "shard manifest not JSON", "tokenizer.json deleted",
                     "tokenizer.json changed"]


def _refusal_of(cfg, run_name: str, *errors: type[BaseException]) -> str:
    from mer.launch.runner import run_training

    with pytest.raises(errors) as refusal:
        run_training(cfg, run_name, _resolved(cfg))
    return str(refusal.value)


@pytest.mark.parametrize("case", DATA_DAMAGE_CASES)
def test_a_damaged_data_cache_is_refused_with_the_file_and_the_fix(case, damaged_copy):
    """A new run on a damaged cache: refused by the preparation that starts every run, before the model exists;
    the new run leaves nothing behind and the earlier run and the cache stay as they were."""
    import shlex

    from mer.data.corpus import DataError

    cfg, run, data = damaged_copy
    damaged, folder, expected = _damage_data(cfg, case)
    before = snapshot(run.parent, data)
    message = _refusal_of(cfg, "new", DataError)
    assert str(damaged) in message, message
    assert f"`rm -r {shlex.quote(str(folder))}`" in message, message
    for part in expected:
        assert part in message, message
    # the data cache's lock file may be new (it is taken to check the entry); nothing that was there changes
    assert_unchanged(before, snapshot(run.parent, data), new_allowed=True)
    assert not (run.parent / "new").exists()


def _damage_run(run: Path, case: str) -> tuple[Path, list[str]]:
    """Damage the checkpointed run: (the file the message must name, what else it must say)."""
    state, manifest = run / "checkpoint" / "state.pt", run / "checkpoint" / "manifest.json"
    metrics = run / "metrics.jsonl"
    if case == "state.pt truncated":
        _truncate(state)
        return state, ["bytes, its checkpoint manifest says"]
    if case == "state.pt with flipped bits":
        size = state.stat().st_size
        _flip_bits(state, [size // 3, size // 2, 2 * size // 3])  # deep in the tensors: torch.load reads them
        return state, ["is damaged: its sha256 is"]
    if case == "checkpoint manifest deleted":
        manifest.unlink()
        return manifest, ["is missing"]
    if case == "checkpoint manifest edited":
        listed = json.loads(manifest.read_text())
        listed["files"]["state.pt"]["sha256"] = "0" * 64
        manifest.write_text(json.dumps(listed, indent=2))
        return state, ["is damaged: its sha256 is"]
    if case == "checkpoint manifest not JSON":
        manifest.write_text(manifest.read_text()[:40])
        return manifest, ["cannot be read"]
    lines = metrics.read_bytes().splitlines(keepends=True)
    if case == "metrics shorter than the checkpoint saw":
        metrics.write_bytes(b"".join(lines[:2]))
        return metrics, ["fewer than the", "the checkpoint has seen"]
    if case == "a metrics line edited":
        text = metrics.read_text()
        at = text.index('"loss": ') + len('"loss": ')
        metrics.write_text(text[:at] + ("9" if text[at] != "9" else "8") + text[at + 1:])  # same length
        return metrics, ["differs from the log the checkpoint has seen"]
    if case == "garbage in the middle of metrics":
        metrics.write_bytes(b"".join(lines[:2]) + b"\x00\xff garbage \x01\n" + b"".join(lines[2:]))
        return metrics, ["line 3 is not a metrics record"]
    raise AssertionError(case)


RUN_DAMAGE_CASES = ["state.pt truncated", "state.pt with flipped bits", "checkpoint manifest deleted",
                    "checkpoint manifest edited", "checkpoint manifest not JSON",
                    "metrics shorter than the checkpoint saw", "a metrics line edited",
                    "garbage in the middle of metrics"]


@pytest.mark.parametrize("case", RUN_DAMAGE_CASES)
def test_a_damaged_run_directory_is_refused_with_the_file_and_the_fix(case, damaged_copy):
    """The relaunch of the checkpointed run: refused before the data is prepared or the model built."""
    import shlex

    from mer.rundir.integrity import RunDirectoryDamaged

    cfg, run, data = damaged_copy
    damaged, expected = _damage_run(run, case)
    before = snapshot(run.parent, data)
    message = _refusal_of(cfg, "run", RunDirectoryDamaged)
    assert str(damaged) in message, message
    assert f"`python -m mer.start_over {shlex.quote(str(run))}`" in message, message
    for part in expected:
        assert part in message, message
    assert_unchanged(before, snapshot(run.parent, data))


def test_the_undamaged_copy_resumes(damaged_copy):
    """The control of the two tables above: the copies themselves pass every check (the damage is refused, not
    the copying), and the run then completes."""
    from mer.launch.runner import run_training
    from mer.rundir.resume_check import check_run_directory

    cfg, run, data = damaged_copy
    check_run_directory(run)
    assert run_training(cfg, "run", _resolved(cfg))["status"] == "completed"


def test_a_checkpoint_of_an_older_mer_without_a_manifest_is_still_accepted(tmp_path):
    """The deleted-manifest refusal tells a deleted manifest from a checkpoint written before manifests existed
    (its state.pt records the log's length alone): that one still resumes, with a warning."""
    import torch

    from mer.rundir.checkpoint_integrity import verify_checkpoint

    checkpoint = tmp_path / "run" / "checkpoint"
    checkpoint.mkdir(parents=True)
    torch.save({"step": 4, "metrics_bytes": 120, "model": {"w": torch.zeros(3)}}, checkpoint / "state.pt")
    assert verify_checkpoint(checkpoint) is None


def test_a_run_directory_with_another_alpha_is_refused_naming_the_change(damaged_copy):
    import shlex

    from mer.launch.runner import RunConfigMismatch

    cfg, run, data = damaged_copy
    saved = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**saved, "alpha": 0.5}))
    before = snapshot(run.parent, data)
    message = _refusal_of(cfg, "run", RunConfigMismatch)
    assert str(run) in message and "alpha: 0.5 -> 0.25" in message, message
    assert f"`rm -r {shlex.quote(str(run))}`" in message, message
    assert_unchanged(before, snapshot(run.parent, data))


def test_a_run_directory_locked_by_a_live_process_is_refused_naming_its_pid(damaged_copy):
    """Another process (a real one) holds the run directory's lock: the relaunch is refused naming it."""
    from mer.rundir.lock import RunDirLocked

    cfg, run, data = damaged_copy
    with _lock_holder(run) as holder:
        before = snapshot(run.parent, data)
        message = _refusal_of(cfg, "run", RunDirLocked)
        assert_unchanged(before, snapshot(run.parent, data))
    assert f"{run} is in use by pid {holder.pid} on " in message, message
    assert "wait for it to end (or stop it)" in message, message


class _lock_holder:
    """A Python process that takes `run`'s lock through mer.rundir.lock and holds it until the block ends."""

    def __init__(self, run: Path) -> None:
        self.run = run

    def __enter__(self) -> subprocess.Popen:
        code = ("import sys; from pathlib import Path; from mer.rundir.lock import RunLock; "
                "lock = RunLock(Path(sys.argv[1])); lock.acquire(); print('held', flush=True); sys.stdin.read()")
        self.process = subprocess.Popen([sys.executable, "-c", code, str(self.run)], cwd=REPO, text=True,
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert self.process.stdout.readline().strip() == "held"
        return self.process

    def __exit__(self, *exc: object) -> None:
        self.process.stdin.close()  # it reads to the end of its input, then exits and the kernel frees the lock
        self.process.wait(timeout=60)


# ------------------------------------------------------------------------------------------------- storages
STORAGE_CASES = [
    ("notaurl", "use null, sqlite, journal, journal:<path> or a URL"),
    ("postgresql://nohost/db", "cannot open the Optuna storage"),
    ("mysql+pymysql://user@127.0.0.1:1/db", "cannot open the Optuna storage"),
    ("sqlite:////nonexistent_dir/sub/optuna.db", "cannot open the Optuna storage"),
    ("journal:/proc/no_such_dir/optuna.journal", "cannot open the Optuna storage"),
]


@pytest.mark.parametrize(("storage", "expected"), STORAGE_CASES, ids=[c[0] for c in STORAGE_CASES])
def test_an_optuna_storage_that_cannot_be_opened_is_refused(storage, expected, written):
    from hydra_plugins.mer_sweeps.optuna_sweeper import MerOptunaSweeper, StorageError

    runs, data = written
    sweep_dir = runs / "optuna"
    before = snapshot(runs, data)
    sweeper = MerOptunaSweeper(sampler=None, study_name="s", storage=storage, direction="minimize",
                               objectives=["metrics.retained_loss"], n_trials=1, n_jobs=1, params=None)
    sweeper.sweep_dir = sweep_dir
    with pytest.raises(StorageError) as refusal:
        sweeper._open_study(None)
    assert f"hydra.sweeper.storage={storage!r}" in str(refusal.value) and expected in str(refusal.value)
    assert_unchanged(before, snapshot(runs, data))


# ------------------------------------------------------------------------------------------------- command line
def run_cli(module: str, args: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    env.pop("HYDRA_FULL_ERROR", None)
    return subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300)


CLI_CASES = [
    ("mer.run", ["+optim.lrr=1"], "unknown config key 'optim.lrr'. Did you mean 'optim.lr'?"),
    ("mer.run", ["optim.lrr=1"], "unknown config key 'optim.lrr'. Did you mean 'optim.lr'?"),
    ("mer.run", ["alpha=abc"], "Value 'abc' of type 'str' could not be converted to Float"),
    ("mer.run", ["model=nope"], "Could not find 'model/nope'"),
    ("mer.run", ["seed=-1"], "seed=-1 must be an integer in [0, 2**63)"),
    ("mer.run", ["alpha=[1"], "no viable alternative at input '[1'"),
    ("mer.run", ["data.tasks=[{name:en,source:files,train_files:[/no/such/corpus.txt]}]"],
     "/no/such/corpus.txt' matches no file"),
    ("mer.run", ["-m", "+sweep=optuna_mer", "hydra.sweeper.storage=postgresql://nohost/db"],
     "hydra.sweeper.storage='postgresql://nohost/db': cannot open the Optuna storage"),
    ("mer.data.prepare", ["+data.foo=1"], "unknown config key 'data.foo'"),
]


@pytest.mark.slow
@pytest.mark.parametrize(("module", "args", "expected"), CLI_CASES, ids=[" ".join(c[1]) for c in CLI_CASES])
def test_the_command_line_prints_one_message_and_exits_2(module, args, expected, written):
    runs, data = written
    before = snapshot(runs, data)
    proc = run_cli(module, [*args, f"data.data_dir={data}"] + ([f"runs_dir={runs}"] if module == "mer.run" else []))
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert expected in proc.stdout + proc.stderr, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr + proc.stdout and "HYDRA_FULL_ERROR" not in proc.stderr, proc.stderr
    assert_unchanged(before, snapshot(runs, data))


def _small_run_args(small_bible_cfg, data: Path, runs: Path, run_name: str) -> list[str]:
    """`python -m mer.run` overrides of a tiny two-task run on (a copy of) the small Bible cache."""
    tasks = ",".join(f"{{name:{t.name},max_train_documents:{t.max_train_documents}}}"
                     for t in small_bible_cfg.tasks[:2])
    return [f"data.tasks=[{tasks}]", f"data.data_dir={data}", f"runs_dir={runs}", f"run_name={run_name}",
            f"data.tokenizer.vocab_size={small_bible_cfg.tokenizer.vocab_size}",
            f"data.tokenizer.train_chars_per_task={small_bible_cfg.tokenizer.train_chars_per_task}",
            "model=cpu-0.5m", "model.seq_len=32", "optim.batch_size=8", "data.budget_tokens=512",
            "data.eval_tokens=65", "threads=1", "peak_flops=1e12"]


def _one_line_refusal(proc: subprocess.CompletedProcess, needle: str) -> str:
    output = proc.stdout + proc.stderr
    assert proc.returncode == 2, output[-3000:]
    assert "Traceback" not in output, output[-3000:]
    return next(line for line in output.splitlines() if needle in line)


@pytest.mark.slow
def test_the_run_command_refuses_a_zeroed_shard_in_one_line(small_bible, damaged_copy):
    """As a user meets it: `python -m mer.run` on a cache whose shard was overwritten with zeros at the same size
    exits 2 with one line naming the shard and `rm -r <its folder>`; nothing is written."""
    import shlex

    from mer.config.run_config import RunConfig, to_dataclass
    from mer.data.pipeline import prepare_data

    _, run, data = damaged_copy
    args = _small_run_args(small_bible[0], data, run.parent, "new")
    shard = prepare_data(to_dataclass(compose(args), RunConfig).data).shards[0].path("train")  # the command's shard
    shard.write_bytes(bytes(shard.stat().st_size))
    before = snapshot(run.parent, data)
    line = _one_line_refusal(run_cli("mer.run", args), "does not match")
    assert str(shard) in line and f"`rm -r {shlex.quote(str(shard.parent))}`" in line, line
    assert_unchanged(before, snapshot(run.parent, data), new_allowed=True)  # the cache's lock file may be new
    assert not (run.parent / "new").exists()


@pytest.mark.slow
def test_the_run_command_refuses_a_run_directory_in_use_in_one_line(small_bible, damaged_copy):
    """A second `python -m mer.run` of a run another live process owns exits 2 naming that process's pid."""
    _, run, data = damaged_copy
    with _lock_holder(run) as holder:
        before = snapshot(run.parent, data)
        proc = run_cli("mer.run", _small_run_args(small_bible[0], data, run.parent, "run"))
        assert_unchanged(before, snapshot(run.parent, data))
    line = _one_line_refusal(proc, "is in use by")
    assert f"{run} is in use by pid {holder.pid} on " in line and "wait for it to end" in line, line


# ------------------------------------------------------------------------------------------------- issue 23
# Items 3, 7-13 of issue 23 ("nothing silent, nothing lost"): each case is named by its item.
def _downstream_records(model: str, value: float, limit: int | None) -> list[dict]:
    return [{"model": model, "after_task": "en", "task_index": 0, "task": task, "metric": metric, "filter": "none",
             "value": value, "stderr": 0.02, "n_samples": limit or 345, "group": False, "limit": limit}
            for task in ("bible_cloze_en", "bible_cloze_fr") for metric in ("acc", "acc_mutual_info")]


@pytest.mark.parametrize("case", ["i23_03_limit_never_replaces_full_scores"])
def test_limited_downstream_scores_are_kept_apart_from_full_ones(case, tmp_path):
    """`mer.downstream --limit 100` after a full-set scoring: the full records stay, the limited ones sit beside
    them, the report's table shows the full score; a model scored only on a subset is marked `(limit N)`."""
    from analysis.downstream import downstream_table, read_downstream
    from mer.evaluation.harness import read_records, record_results

    run = tmp_path / "run"
    run.mkdir()
    full = _downstream_records("after_en", 0.40, None)
    record_results(run, full)
    record_results(run, _downstream_records("after_en", 0.30, 100) + _downstream_records("after_fr", 0.35, 100))
    records = read_records(run)
    assert [r for r in records if r["limit"] is None] == full  # not one full-set record replaced
    assert len([r for r in records if r["limit"] == 100]) == 8
    record_results(run, _downstream_records("after_en", 0.31, 100))  # the same limit again replaces its own records
    assert len(read_records(run)) == 4 + 8
    table = downstream_table(read_downstream([("run", run)])[0]).set_index("model")
    assert table.loc["after_en", "bible_cloze_en acc_mutual_info"] == "0.400 ± 0.020"
    assert table.loc["after_fr", "bible_cloze_en acc_mutual_info"] == "0.350 ± 0.020 (limit 100)"


# A run continued from a Hugging Face model as a user downloads one: a tiny Qwen2 in a folder of the Hub's cache
# (models--<org>--<name>/snapshots/<rev>), with a list of end-of-text ids, sampling settings and a licence.
def _hub_like_base(folder: Path, tokenizer_dir: Path) -> Path:
    from mer_testing import save_tiny_llama
    from transformers import AutoTokenizer

    save_tiny_llama(folder, tokenizer_dir, architecture="qwen2")
    eos = AutoTokenizer.from_pretrained(str(tokenizer_dir)).eos_token_id
    config = json.loads((folder / "config.json").read_text())
    config.update(bos_token_id=eos, eos_token_id=[eos, 3])
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "generation_config.json").write_text(json.dumps({
        "bos_token_id": eos, "eos_token_id": [eos, 3], "do_sample": True, "temperature": 0.6, "top_p": 0.9}))
    (folder / "README.md").write_text("---\nlicense: apache-2.0\n---\n# tiny qwen\n")
    return folder


@pytest.fixture(scope="module")
def continued_run(small_bible, tmp_path_factory):
    """A completed two-task run continued from `_hub_like_base`, with export_each_task, eval.downstream on
    bible_cloze_en (2 items) and MLflow: (run dir, base folder, summary). Tests change copies only."""
    import dataclasses

    from mer_testing import tiny_run_config

    from mer.config.run_config import EvalConfig, RunConfig
    from mer.launch.runner import run_training
    from mer.model.llama import get_preset
    from mer.trackers.config import LoggerConfig, MlflowConfig

    root = tmp_path_factory.mktemp("continued")
    base = _hub_like_base(root / "hub" / "models--acme--tiny-qwen" / "snapshots" / "0123abc",
                          small_bible[1].tokenizer_dir)
    data = dataclasses.replace(small_bible[0], tasks=small_bible[0].tasks[:2])
    cfg = tiny_run_config(data, root / "runs", export_each_task=True, logger=LoggerConfig(mlflow=MlflowConfig()),
                          eval=EvalConfig(every=8, batch_size=4, downstream=["bible_cloze_en"], downstream_limit=2),
                          model=dataclasses.replace(get_preset("cpu-0.5m", seq_len=32), init_from=str(base)))
    cfg = RunConfig(**{f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)})  # init_from's checks again
    summary = run_training(cfg, "run", _resolved(cfg))
    return root / "runs" / "run", base, summary


def _run_copy(continued_run, tmp_path) -> Path:
    import shutil

    shutil.copytree(continued_run[0], tmp_path / "runs" / "run")
    return tmp_path / "runs" / "run"


@pytest.mark.slow
@pytest.mark.parametrize("case", ["i23_08_export_keeps_generation_config_and_eos_list"])
def test_export_keeps_the_base_models_generation_config_and_eos_ids(case, continued_run, tmp_path):
    run, base, _ = continued_run
    proc = run_cli("mer.export", [str(run), "--out", str(tmp_path / "out")])
    assert proc.returncode == 0, proc.stderr[-3000:]
    wanted = json.loads((base / "generation_config.json").read_text())
    for folder in (tmp_path / "out", run / "models" / "after_fr"):  # the command's export and export_each_task's
        generation = json.loads((folder / "generation_config.json").read_text())
        assert {k: generation.get(k) for k in wanted} == wanted, folder
        assert json.loads((folder / "config.json").read_text())["eos_token_id"] == wanted["eos_token_id"], folder


@pytest.mark.slow
@pytest.mark.parametrize("case", ["i23_09_base_tokenizer_replaced", "i23_09_base_folder_gone",
                                  "i23_09_kept_tokenizer_edited"])
def test_export_ships_the_tokenizer_the_run_was_trained_with(case, continued_run, tmp_path):
    """The run directory keeps its tokenizer (`tokenizer/`, its hash in summary.json) and the base model's configs:
    it exports on its own whatever happens to model.init_from; a changed copy is refused naming it."""
    import shutil

    from transformers import AutoTokenizer

    run, base, summary = continued_run
    run = _run_copy(continued_run, tmp_path)
    config = json.loads((run / "config.json").read_text())
    moved = tmp_path / "base"
    shutil.copytree(base, moved)
    config["model"]["init_from"] = config["data"]["tokenizer"]["path"] = str(moved)
    (run / "config.json").write_text(json.dumps(config))
    if case == "i23_09_base_tokenizer_replaced":  # a smaller tokenizer whose end-of-text id is 0
        from tokenizers import Tokenizer, models, pre_tokenizers, trainers
        from transformers import PreTrainedTokenizerFast

        small = Tokenizer(models.BPE())
        small.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        small.train_from_iterator(["a b c"], trainers.BpeTrainer(vocab_size=300, special_tokens=["<eos>"],
                                                                 initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
        for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
            (moved / name).unlink(missing_ok=True)
        PreTrainedTokenizerFast(tokenizer_object=small, eos_token="<eos>").save_pretrained(str(moved))
    elif case == "i23_09_base_folder_gone":
        shutil.rmtree(moved)
    else:
        (run / "tokenizer" / "tokenizer.json").write_text("{}")
    before = snapshot(run)
    proc = run_cli("mer.export", [str(run), "--out", str(tmp_path / "out")])
    if case == "i23_09_kept_tokenizer_edited":
        line = _one_line_refusal(proc, "has changed since training")
        assert str(run / "tokenizer") in line and summary["tokenizer_files_hash"] in line, line
        assert not (tmp_path / "out").exists()
    else:
        assert proc.returncode == 0, proc.stderr[-3000:]
        exported = AutoTokenizer.from_pretrained(str(tmp_path / "out"))
        trained = AutoTokenizer.from_pretrained(str(base))
        assert exported.get_vocab() == trained.get_vocab() and exported.eos_token_id == trained.eos_token_id
    assert_unchanged(before, snapshot(run))


def _damage_weights(folder: Path, case: str) -> None:
    weights = folder / "model.safetensors"
    data = bytearray(weights.read_bytes())
    if case == "i23_10_header_corrupted":
        data[0:8] = (2**40).to_bytes(8, "little")
        weights.write_bytes(bytes(data))
    elif case == "i23_10_truncated":
        weights.write_bytes(bytes(data[: len(data) - 1000]))
    else:
        from safetensors.torch import load_file, save_file

        tensors = load_file(str(weights))
        tensors["model.layers.0.mlp.up_proj.weight"][0, 0] = float("nan")
        save_file(tensors, str(weights), metadata={"format": "pt"})


@pytest.mark.slow
@pytest.mark.parametrize("case", ["i23_10_header_corrupted", "i23_10_truncated", "i23_10_nan_weights"])
def test_damaged_base_weights_are_refused_before_any_work(case, small_bible, tmp_path):
    from mer_testing import save_tiny_llama, small_bible_cli_overrides

    base = save_tiny_llama(tmp_path / "base", small_bible[1].tokenizer_dir)
    _damage_weights(base, case)
    runs, data = tmp_path / "runs", Path(small_bible[0].data_dir)
    runs.mkdir()  # Hydra's own output folder (hydra.run.dir) is the runs folder: made before any check
    before = snapshot(tmp_path, data)
    proc = run_cli("mer.run", [*small_bible_cli_overrides(data), f"model.init_from={base}", f"runs_dir={runs}"])
    needle = {"i23_10_header_corrupted": "is damaged", "i23_10_truncated": "is truncated",
              "i23_10_nan_weights": "non-finite"}[case]
    line = _one_line_refusal(proc, needle)
    assert str(base / "model.safetensors") in line and "model.init_from=" in line, line
    if case == "i23_10_nan_weights":
        assert "model.layers.0.mlp.up_proj.weight" in line and "not the learning rate" in line, line
    assert_unchanged(before, snapshot(tmp_path, data))  # no run directory, no data written


@pytest.mark.slow
@pytest.mark.parametrize("case", ["i23_11_model_card_front_matter"])
def test_the_model_card_names_the_architecture_the_hub_base_and_a_licence(case, continued_run, tmp_path):
    from mer.hf.model_card import model_card

    run, _, _ = continued_run
    for folder in (run / "models" / "after_en", run / "models" / "after_fr"):
        front = (folder / "README.md").read_text().split("---")[1]
        assert "- qwen2\n" in front and "- llama\n" not in front, front
        assert 'base_model: "acme/tiny-qwen"' in front and "license: apache-2.0" in front, front
    config = json.loads((run / "config.json").read_text())
    config["model"]["init_from"] = str(tmp_path)  # a base known only by its local path: no base_model, licence other
    local = model_card("run", config, ["en"], None, None, model_type="mistral").split("---")[1]
    assert "base_model" not in local and "license: other" in local and "- mistral\n" in local, local
    config["model"]["init_from"] = None  # from random weights on the Bible source alone: mer's licence
    assert "license: mit" in model_card("run", config, ["en"], None, None).split("---")[1]


@pytest.mark.slow
@pytest.mark.parametrize("case", ["i23_12_downstream_scores_reach_mlflow"])
def test_downstream_scores_during_training_reach_the_trackers(case, continued_run):
    from mlflow.tracking import MlflowClient

    run, _, summary = continued_run
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    scored = [r for r in records if r["event"] == "downstream"]
    assert [(r["task"], r["step"]) for r in scored] == [("en", summary["steps_per_task"]["en"]),
                                                        ("fr", summary["totals"]["steps"])]
    state = json.loads((run / "trackers.json").read_text())["mlflow"]
    client = MlflowClient(tracking_uri=state["tracking_uri"])
    history = client.get_metric_history(state["run_id"], "downstream/bible_cloze_en/acc_mutual_info")
    assert [(m.step, m.value) for m in history] == [(r["step"], r["bible_cloze_en"]["acc_mutual_info"])
                                                    for r in scored]


@pytest.mark.slow
@pytest.mark.parametrize("case", ["i23_13_prepare_takes_init_from"])
def test_prepare_takes_init_from_and_the_run_records_its_cloze_folder_without_warnings(case, continued_run,
                                                                                      small_bible, tmp_path):
    import shutil

    from mer_testing import small_bible_cli_overrides

    run, base, summary = continued_run
    assert summary["cloze_dir"] and (Path(summary["cloze_dir"]) / "_bible_cloze.yaml").is_file()
    assert json.loads((run / "summary.json").read_text())["cloze_dir"] == summary["cloze_dir"]
    short = tmp_path / "short"  # a tokenizer that says its model takes 16 positions: documents are longer
    shutil.copytree(base, short)
    tokenizer_config = json.loads((short / "tokenizer_config.json").read_text())
    (short / "tokenizer_config.json").write_text(json.dumps({**tokenizer_config, "model_max_length": 16}))
    data = tmp_path / "data"
    args = [a for a in small_bible_cli_overrides(data) if a.startswith("data.")]
    proc = run_cli("mer.data.prepare", [*args, f"model.init_from={short}"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Token indices sequence length" not in proc.stdout + proc.stderr
    assert "downstream task bible_cloze" in proc.stdout
    from mer.files.hashing import tokenizer_files_hash

    assert f"tokenizer {tokenizer_files_hash(short)} " in proc.stdout  # the model's, as `mer.run` will use
