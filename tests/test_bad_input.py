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
import time
from pathlib import Path
from typing import Any

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
    (["data.tasks=[{name:en,source:tokens,train_files:[a.bin]}]"], ["source 'tokens' needs val_files"]),
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


# Issue 23's configs: (id naming the item, overrides, what the message must say).
I23_CONFIG_CASES = [
    ("i23_04_run_name_escape", ["run_name=../../x"], ["run_name='../../x' holds '/'", "runs_dir=<folder>"]),
    ("i23_04_run_name_absolute", ["run_name=/tmp/x"], ["run_name='/tmp/x' holds '/'"]),
    ("i23_04_run_name_parent", ["run_name=.."], ["run_name='..' would not name a folder inside runs_dir"]),
    ("i23_04_run_name_backslash", ["run_name=a\\b"], ["holds '\\\\'"]),
    ("i23_14_encoding_unknown", ["data.tasks=[{name:en,source:files,train_files:[a.txt],encoding:utf-99}]"],
     ["data.tasks[en].encoding='utf-99' is not a text encoding"]),
    ("i23_14_threads_above_the_cpus", ["threads=100000"], ["threads=100000 is more than the", "use at most threads="]),
    ("i20_04_hf_key_with_another_source",
     ["data.tasks=[{name:en,source:files,train_files:[a.txt],dataset:/data/x,val_split:test}]"],
     ["data.tasks[en]: dataset, val_split would be ignored with source 'files'", "set source: hf"]),
    ("i20_04_hf_without_a_dataset", ["data.tasks=[{name:en,source:hf}]"], ["source 'hf' needs dataset"]),
    ("i20_04_hf_val_split_is_the_train_split", ["data.tasks=[{name:en,source:hf,dataset:x,val_split:train}]"],
     ["val_split='train' is the training split"]),
]


@pytest.mark.parametrize(("overrides", "expected"), [c[1:] for c in I23_CONFIG_CASES], ids=[c[0] for c in I23_CONFIG_CASES])
def test_issue_23_configs_are_refused_with_the_key_named(overrides, expected, written):
    assert_config_refused(overrides, expected, written)


def assert_config_refused(overrides: list[str], expected: list[str], written) -> None:
    """The config is refused with every part of `expected` in its message, and nothing written changes."""
    runs, data = written
    before = snapshot(runs, data)
    message = config_refusal([f"runs_dir={runs}", f"data.data_dir={data}", *overrides])
    for part in expected:
        assert part in message, message
    assert_unchanged(before, snapshot(runs, data))


# Issue 19 item 7's configs: the Debian package choice of a task (id naming the item, overrides, the message).
I19_CONFIG_CASES = [
    ("i19_07_packages_on_a_files_task",
     ["data.tasks=[{name:en,source:files,train_files:[a.txt],packages:[debian-handbook]}]"],
     ["data.tasks[en]: packages choose Debian packages and apply only to source: debian",
      "this task's source is 'files'", "drop packages or set source: debian"]),
    ("i19_07_max_packages_on_a_bible_task", ["data.tasks=[{name:fr,max_packages:2}]"],
     ["data.tasks[fr]: max_packages choose Debian packages", "source is 'bible'"]),
    ("i19_07_bad_package_name", ["data.tasks=[{name:fr,source:debian,packages:[debian-handbook,Debian_Reference]}]"],
     ["data.tasks[fr].packages: 'Debian_Reference' is not a Debian package name", "lowercase letters"]),
    ("i19_07_package_list_given_as_a_string", ["data.tasks=[{name:fr,source:debian,packages:debian-handbook}]"],
     ["Error merging override data.tasks=[{name:fr,source:debian,packages:debian-handbook}]",
      "is not a ListConfig, list or tuple", "full_key: packages"]),
    ("i19_07_max_packages_zero", ["data.tasks=[{name:de,source:debian,max_packages:0}]"],
     ["data.tasks[de].max_packages=0 must be >= 1"]),
    ("i19_07_debian_language_unknown", ["data.tasks=[{name:en-debian,source:debian}]"],
     ["data.tasks[en-debian]: source debian has no language 'en-debian'", "set language to one of en, fr"]),
    ("i19_07_min_val_tokens_below_two", ["data.min_val_tokens=1"], ["data.min_val_tokens=1 must be >= 2"]),
]


@pytest.mark.parametrize(("overrides", "expected"), [c[1:] for c in I19_CONFIG_CASES], ids=[c[0] for c in I19_CONFIG_CASES])
def test_issue_19_configs_are_refused_with_the_key_named(overrides, expected, written):
    """Refused while the config is built: before any package list is read or anything downloaded."""
    assert_config_refused(overrides, expected, written)


@pytest.mark.slow
def test_i23_04_a_refused_run_name_is_not_recorded_outside_the_runs_folder(tmp_path):
    """A multirun point refused for its run_name records nothing: its refusal record would land outside runs_dir."""
    runs = tmp_path / "sweep" / "runs"
    runs.mkdir(parents=True)
    proc = run_cli("mer.run", ["-m", f"runs_dir={runs}", "run_name=../../escaped", "hydra.sweep.dir=" + str(tmp_path / "hs")])
    assert "run_name='../../escaped' holds '/'" in proc.stdout + proc.stderr, proc.stderr[-3000:]
    assert not (tmp_path / "escaped").exists() and not list(runs.iterdir())


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
    if case == "i23_06_jsonl_text_not_a_string":
        path = tmp / "typed.jsonl"
        path.write_text('{"text": "fine"}\n{"text": ["a", "list"]}\n{"text": "fine too"}\n')
        return {"train_files": [str(path)]}, [f"{path}:2", "field 'text' holds list", "not a string"]
    if case == "i23_06_jsonl_text_null":
        path = tmp / "null.jsonl"
        path.write_text('{"text": "fine"}\n{"text": null}\n')
        return {"train_files": [str(path)]}, [f"{path}:2", "field 'text' holds NoneType"]
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
                "empty validation file", "i23_06_jsonl_text_not_a_string", "i23_06_jsonl_text_null"]


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


# Issue 20's corpora and data sets: (id naming the item, what the message must say). Each case writes its input
# under tmp; the "changed"/"removed" ones prepare it first and are then refused at a run's start (on_change="refuse").
I20_DATA_CASES = [
    ("i20_03_corpus_changed_after_preparation", ["train_files file", "changed", "python -m mer.data.prepare"]),
    ("i20_03_corpus_file_removed_after_preparation", ["train_files file", "was removed", "python -m mer.data.prepare"]),
    ("i20_03_verify_of_data_never_prepared", ["were never prepared in this data cache", "python -m mer.data.prepare"]),
    ("i20_04_hf_missing_column", ["has no column 'text'", "columns: ['body']", "text_field"]),
    ("i20_04_hf_missing_split", ["has no split 'validation'", "split/val_split"]),
    ("i20_04_hf_dataset_not_found", ["is neither a folder, data files, nor a hub data set in the local", "download"]),
    ("i20_04_tokens_file_not_whole_tokens", ["b.bin has 3 bytes, not a whole number of uint16 tokens"]),
    ("i20_04_tokens_folder_without_bin_files", ["matches no file", "*.bin"]),
]


def _i20_case(tmp: Path, data: Path, case: str) -> tuple[Any, str]:
    """(the DataConfig of one issue-20 case, on_change or "verify"), its input written and prepared where needed."""
    from mer.data.config import DataConfig, TaskConfig, TokenizerConfig
    from mer.data.pipeline import prepare_data

    tokenizer = TokenizerConfig(vocab_size=300, train_chars_per_task=10_000)
    text = "\n\n".join(f"Paragraph {i} of plain English text for the test." for i in range(300))
    if case.startswith("i20_03"):
        train = tmp / "a.txt"
        train.write_text(text)
        cfg = DataConfig(tasks=[files_task(train_files=[str(tmp / "*.txt")])], data_dir=str(data), tokenizer=tokenizer,
                         min_val_tokens=2)  # a small corpus: its held-out share is a few dozen tokens
        if case == "i20_03_verify_of_data_never_prepared":
            return cfg, "verify"
        prepare_data(cfg)
        if case == "i20_03_corpus_changed_after_preparation":
            train.write_text(text.replace("Paragraph 7 ", "Paragraph 8 "))
        else:
            (tmp / "b.txt").write_text(text)
            prepare_data(cfg)
            (tmp / "b.txt").unlink()
        return cfg, "refuse"
    if case.startswith("i20_04_hf"):
        import pyarrow as pa
        import pyarrow.parquet as pq

        folder = tmp / "ds" / "data"
        folder.mkdir(parents=True)
        column = "body" if case == "i20_04_hf_missing_column" else "text"
        pq.write_table(pa.table({column: text.split("\n\n")}), folder / "train-00000-of-00001.parquet")
        fields = {"dataset": str(folder.parent)}
        if case == "i20_04_hf_missing_split":
            fields["val_split"] = "validation"
        if case == "i20_04_hf_dataset_not_found":
            fields["dataset"] = "nobody/no-such-data-set"
        return DataConfig(tasks=[TaskConfig(name="en", source="hf", **fields)], data_dir=str(data),
                          tokenizer=tokenizer), "refuse"
    from mer_testing import word_tokenizer

    (tmp / "tok").mkdir()
    (tmp / "tok" / "a.bin").write_bytes(bytes(200))
    if case == "i20_04_tokens_file_not_whole_tokens":
        (tmp / "tok" / "b.bin").write_bytes(b"\x01\x02\x03")
    train = [str(tmp / "tok")] if case == "i20_04_tokens_file_not_whole_tokens" else [str(tmp)]
    if case == "i20_04_tokens_folder_without_bin_files":
        (tmp / "empty").mkdir()
        train = [str(tmp / "empty")]
    return DataConfig(tasks=[TaskConfig(name="en", source="tokens", train_files=train,
                                        val_files=[str(tmp / "tok" / "a.bin")])], data_dir=str(data),
                      tokenizer=TokenizerConfig(path=str(word_tokenizer(tmp / "tokenizer", 300)))), "refuse"


@pytest.mark.parametrize(("case", "expected"), I20_DATA_CASES, ids=[c[0] for c in I20_DATA_CASES])
def test_issue_20_bad_data_is_refused_with_the_file_named(case, expected, written, tmp_path):
    pytest.importorskip("datasets")
    from mer.data.corpus import DataError
    from mer.data.pipeline import prepare_data
    from mer.data.verify import verify_data

    runs, data = written
    corpus_dir = tmp_path / "corpus"
    corpus_dir.mkdir()
    cfg, mode = _i20_case(corpus_dir, data, case)
    before = snapshot(runs, data, corpus_dir)
    with pytest.raises(DataError) as refusal:
        verify_data(cfg) if mode == "verify" else prepare_data(cfg, on_change=mode)
    message = str(refusal.value)
    assert "\n" not in message, message
    for part in expected:
        assert part in message, message
    # Nothing that was there changes (a first look at new input may add the data cache's lock or records).
    assert_unchanged(before, snapshot(runs, data, corpus_dir), new_allowed=not case.startswith("i20_03"))


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


def _small_held_out_corpus(folder: Path) -> Path:
    """400 short English paragraphs: 5% held out by hash is about 20 of them, a few hundred tokens."""
    path = folder / "small_val.txt"
    path.write_text("\n\n".join(f"Paragraph {i} of plain English text, written for the test of a held-out split."
                                  for i in range(400)))
    return path


def test_i19_07_a_validation_split_under_the_minimum_is_refused(written, tmp_path):
    runs, data = written
    corpus = _small_held_out_corpus(tmp_path)
    before = snapshot(runs, data, tmp_path / "small_val.txt")
    message = prepare_refusal(data, [files_task(train_files=[str(corpus)], val_fraction=0.05)])
    manifest = json.loads(next((data / "shards").glob("*/en-*/manifest.json")).read_text())
    n_val = manifest["splits"]["val"]["tokens"]
    assert 0 < n_val < 4096
    assert message == (f"task 'en': its validation split has {n_val:,} tokens, fewer than data.min_val_tokens=4,096, "
                       "too few to evaluate on; raise data.tasks[en].val_fraction (now 0.05), give "
                       "data.tasks[en].val_files, or lower data.min_val_tokens")
    # The complete shards stay in the cache (a new entry); nothing that was there changed.
    assert_unchanged(before, snapshot(runs, data, tmp_path / "small_val.txt"), new_allowed=True)


def test_i19_07_the_minimum_is_checked_for_every_task_before_the_next_is_tokenized(written, tmp_path):
    """The first task passes, the second is refused: the third is never tokenized; lowering the minimum, as the
    message says, prepares all three from the same cache."""
    import dataclasses

    from mer.data.config import DataConfig, TokenizerConfig
    from mer.data.corpus import DataError
    from mer.data.pipeline import prepare_data

    runs, data = written
    corpus = _small_held_out_corpus(tmp_path)
    tasks = [files_task("a", language="en", train_files=[str(corpus)], val_fraction=0.4),
             files_task("b", language="en", train_files=[str(corpus)], val_fraction=0.05),
             files_task("c", language="en", train_files=[str(corpus)], val_fraction=0.1)]
    cfg = DataConfig(tasks=tasks, data_dir=str(data), min_val_tokens=1500,
                     tokenizer=TokenizerConfig(vocab_size=300, train_chars_per_task=10_000))
    with pytest.raises(DataError, match=r"^task 'b': its validation split has [\d,]+ tokens, fewer than "
                                        r"data.min_val_tokens=1,500"):
        prepare_data(cfg)
    assert sorted(p.name.split("-")[0] for p in (data / "shards").glob("*/*") if p.is_dir()) == ["a", "b"]
    prepared = prepare_data(dataclasses.replace(cfg, min_val_tokens=2))
    assert [s.name for s in prepared.shards] == ["a", "b", "c"]
    assert prepared.shards[1].n_tokens("val") < 1500 <= prepared.shards[0].n_tokens("val")


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


def _another_model_size(run: Path) -> None:
    """Replace the run's checkpoint by one of a wider model, with its own valid manifest (as if copied in)."""
    import torch

    from mer.rundir.checkpoint_integrity import read_manifest, write_manifest

    checkpoint = run / "checkpoint"
    state = torch.load(checkpoint / "state.pt", weights_only=True)
    state["model"] = {name: torch.zeros([2 * n for n in tensor.shape]) for name, tensor in state["model"].items()}
    torch.save(state, checkpoint / "state.pt")
    manifest = read_manifest(checkpoint)
    write_manifest(checkpoint, manifest["metrics"], manifest.get("step", 0))


def _damage_run_i23(cfg, run: Path, case: str) -> tuple[Any, Path, list[str]]:
    """Issue 23's run directories: (the config to launch, the path the message must name, what else it says)."""
    import dataclasses

    if case == "i23_01_config_json_deleted":
        (run / "config.json").unlink()
        return dataclasses.replace(cfg, alpha=0.5), run / "config.json", ["is missing", "python -m mer.start_over"]
    if case == "i23_01_config_json_truncated":
        with open(run / "config.json", "r+b") as handle:
            handle.truncate(10)
        return dataclasses.replace(cfg, alpha=0.5), run / "config.json", ["is unreadable", "python -m mer.start_over"]
    if case == "i23_01_config_json_not_an_object":
        (run / "config.json").write_text("[1, 2]")
        return cfg, run / "config.json", ["is not an object"]
    if case == "i23_14_checkpoint_replaced_by_a_file":
        import shutil

        shutil.rmtree(run / "checkpoint")
        (run / "checkpoint").write_text("not a checkpoint")
        return cfg, run / "checkpoint", ["is not a folder", "python -m mer.start_over"]
    if case == "i23_14_checkpoint_of_another_model_size":
        _another_model_size(run)
        return cfg, run / "checkpoint" / "state.pt", ["holds a model of", "the checkpoint belongs to another model"]
    if case == "i23_14_run_lock_is_a_folder":
        (run / "run.lock").mkdir()
        return cfg, run / "run.lock", ["must be a file (the run's lock): remove that folder"]
    raise AssertionError(case)


I23_RUN_CASES = ["i23_01_config_json_deleted", "i23_01_config_json_truncated", "i23_01_config_json_not_an_object",
                 "i23_14_checkpoint_replaced_by_a_file", "i23_14_checkpoint_of_another_model_size",
                 "i23_14_run_lock_is_a_folder"]


@pytest.mark.parametrize("case", I23_RUN_CASES)
def test_issue_23_run_directories_are_refused_untouched(case, damaged_copy):
    """A relaunch into a run directory whose recorded config, checkpoint or lock cannot be used: refused with the
    path named, before anything is written (the summary keeps its status, metrics.jsonl is not set aside)."""
    from mer.launch.runner import RunConfigMismatch
    from mer.rundir.integrity import RunDirectoryDamaged
    from mer.rundir.lock import RunDirUnusable

    cfg, run, data = damaged_copy
    cfg, named, expected = _damage_run_i23(cfg, run, case)
    before = snapshot(run.parent, data)
    message = _refusal_of(cfg, "run", RunDirectoryDamaged, RunConfigMismatch, RunDirUnusable)
    assert str(named) in message, message
    for part in expected:
        assert part in message, message
    assert_unchanged(before, snapshot(run.parent, data))


@pytest.mark.parametrize("case", ["i23_01_config_json_deleted", "i23_14_checkpoint_replaced_by_a_file"])
def test_issue_23_start_over_fixes_the_refused_run_directory(case, damaged_copy):
    """The fix the refusal names works: after `python -m mer.start_over` the same launch trains from step 0."""
    import subprocess

    from mer.launch.runner import run_training

    cfg, run, data = damaged_copy
    cfg, _, _ = _damage_run_i23(cfg, run, case)
    done = subprocess.run([sys.executable, "-m", "mer.start_over", str(run)], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    summary = run_training(cfg, "run", _resolved(cfg))
    assert summary["status"] == "completed"
    assert json.loads((run / "config.json").read_text())["alpha"] == cfg.alpha


@pytest.mark.parametrize("case", ["i23_14_runs_dir_is_a_file", "i23_14_data_dir_is_a_file"])
def test_issue_23_a_runs_or_data_folder_that_is_a_file_is_refused(case, damaged_copy, tmp_path):
    import dataclasses

    from mer.data.corpus import DataError
    from mer.rundir.lock import RunDirUnusable

    cfg, run, data = damaged_copy
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    if case == "i23_14_runs_dir_is_a_file":
        cfg = dataclasses.replace(cfg, runs_dir=str(blocker))
        expected = [str(blocker), "runs_dir must be a folder this process can write"]
    else:
        cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, data_dir=str(blocker)))
        expected = [f"data.data_dir={blocker} is not a folder", "MER_DATA_DIR"]
    before = snapshot(run.parent, data, blocker)
    message = _refusal_of(cfg, "new", DataError, RunDirUnusable)
    for part in expected:
        assert part in message, message
    assert_unchanged(before, snapshot(run.parent, data, blocker))


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


# Issue 20's preparation engine (python -m mer.data.prepare): a setting that cannot take effect is refused.
I20_CLI_CASES = [
    ("i20_02_no_workers", ["workers=0"], "workers=0 must be >= 1"),
    ("i20_02_workers_given_a_word", ["workers=many"], "Value 'many' of type 'str' could not be converted to Integer"),
    ("i20_02_workers_on_slurm", ["launcher=slurm", "workers=4"],
     "workers=4 cannot take effect with launcher=slurm (each array task prepares its pieces in one process); set "
     "slurm.array_tasks instead"),
    ("i20_02_unknown_launcher", ["launcher=ray"], "launcher='ray' is unknown; use one of ('local', 'slurm')"),
    ("i20_02_no_array_tasks", ["launcher=slurm", "slurm.array_tasks=0"], "slurm.array_tasks=0 must be >= 1"),
    ("i20_02_unknown_slurm_key", ["+slurm.partion=cpu"], "partion"),
    ("i20_01_tiny_pieces", ["piece_bytes=100"], "piece_bytes=100 is too small; use at least 4096"),
]


@pytest.mark.slow
@pytest.mark.parametrize(("args", "expected"), [c[1:] for c in I20_CLI_CASES], ids=[c[0] for c in I20_CLI_CASES])
def test_issue_20_preparation_settings_print_one_line_and_exit_2(args, expected, written):
    runs, data = written
    before = snapshot(runs, data)
    proc = run_cli("mer.data.prepare", [*args, f"data.data_dir={data}"])
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert expected in proc.stdout + proc.stderr, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr
    assert_unchanged(before, snapshot(runs, data))

# Issue 23's command lines: (id naming the item, args, what the one line says). EXPERIMENTS are written into a
# folder on Hydra's search path, as a user's own experiment files are.
EXPERIMENTS = {"typo": "# @package _global_\noptim:\n  lrr: 0.1\n",
               "tabs": "# @package _global_\noptim:\n\tlr: 0.1\n",
               "broken": "# @package _global_\noptim: [lr: 0.1\n"}
I23_CLI_CASES = [
    ("i23_19_group_given_a_number", ["model=560"], "model=560 is not a config name of the group 'model'"),
    ("i23_19_group_sweep_given_a_number", ["-m", "plan=true", "model=cpu-0.5m,560"], "Did you mean model=560m?"),
    ("i23_19_integer_given_a_word", ["k=abc"], "Error merging override k=abc: Value 'abc' of type 'str' could not"),
    ("i23_19_integer_sweep_given_a_word", ["-m", "plan=true", "k=0,abc"], "override k=abc: Value 'abc'"),
    ("i23_15_seed_float", ["seed=1.5"], "override seed=1.5: Value '1.5' of type 'float' could not be converted"),
    ("i23_15_budget_in_e_notation", ["data.budget_tokens=1e4"], "write it as an integer: data.budget_tokens=10000"),
    ("i23_15_unknown_key_in_an_experiment_file", ["+experiment=typo"],
     "unknown config key 'optim.lrr' in experiment/typo.yaml. Did you mean 'optim.lr'?"),
    ("i23_14_tab_indented_experiment_file", ["+experiment=tabs"], "tabs.yaml:3:1: not valid YAML"),
    ("i23_14_malformed_experiment_file", ["+experiment=broken"], "broken.yaml:3:1: not valid YAML"),
]


@pytest.mark.slow
@pytest.mark.parametrize(("args", "expected"), [c[1:] for c in I23_CLI_CASES], ids=[c[0] for c in I23_CLI_CASES])
def test_issue_23_command_lines_print_one_line_and_exit_2(args, expected, written, tmp_path):
    runs, data = written
    experiments = tmp_path / "search_path" / "experiment"
    experiments.mkdir(parents=True)
    for name, text in EXPERIMENTS.items():
        (experiments / f"{name}.yaml").write_text(text)
    before = snapshot(runs, data)
    proc = run_cli("mer.run", [*args, f"data.data_dir={data}", f"runs_dir={runs}",
                               f"hydra.searchpath=[file://{experiments.parent}]", f"hydra.sweep.dir={tmp_path / 'sw'}"])
    output = [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]
    assert proc.returncode == 2 and len(output) == 1, output
    assert expected in output[0], output
    assert_unchanged(before, snapshot(runs, data))


I19_CLI_CASES = [
    ("i19_07_prepare_packages_on_a_bible_task", "mer.data.prepare", ["data.tasks=[{name:en,packages:[manpages]}]"],
     "data.tasks[en]: packages choose Debian packages and apply only to source: debian"),
    ("i19_07_run_bad_package_name", "mer.run", ["data.tasks=[{name:fr,source:debian,packages:[Debian_Reference]}]"],
     "data.tasks[fr].packages: 'Debian_Reference' is not a Debian package name"),
    ("i19_07_run_validation_split_under_the_minimum", "mer.run", ["data.tasks=[{name:en,source:files,"
     "train_files:[CORPUS],val_fraction:0.05}]", "data.tokenizer.vocab_size=300",
     "data.tokenizer.train_chars_per_task=10000"], "fewer than data.min_val_tokens=4,096, too few to evaluate on"),
]


@pytest.mark.slow
@pytest.mark.parametrize(("module", "args", "expected"), [c[1:] for c in I19_CLI_CASES],
                         ids=[c[0] for c in I19_CLI_CASES])
def test_issue_19_command_lines_print_one_line_and_exit_2(module, args, expected, written, tmp_path):
    """As a user meets them: one line, exit 2, no run directory and nothing that was there changed (the refused
    validation split's shards are a new, complete cache entry; nothing is downloaded for a refused package list)."""
    runs, data = written
    corpus = _small_held_out_corpus(tmp_path)
    before = snapshot(runs, data)
    args = [arg.replace("CORPUS", str(corpus)) for arg in args]
    proc = run_cli(module, [*args, f"data.data_dir={data}"] + ([f"runs_dir={runs}"] if module == "mer.run" else []))
    output = [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]
    assert proc.returncode == 2 and "Traceback" not in proc.stdout + proc.stderr, output
    # A config is refused before any work: its line is all. The split is known once the task is tokenized: the
    # refusal is the last line, after the progress of the work it needed (training the tokenizer).
    assert expected in output[-1], output
    assert len(output) == 1 or ("min_val_tokens" in expected and not any("min_val_tokens" in line for line in output[:-1]))
    assert_unchanged(before, snapshot(runs, data), new_allowed="min_val_tokens" in expected)
    assert sorted(p.name for p in runs.iterdir()) == ["earlier"]
    assert not (data / "debian").exists()


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
# Items 18, 20, 21 and 22 of issue 23 (tried as a newcomer would): each row's id names the item. The rows that
# need a real sweep or run on the command line are in I23_SLOW_CASES.
def _completed_run(run_dir: Path) -> None:
    run_dir.mkdir(parents=True)
    (run_dir / "summary.json").write_text(json.dumps({
        "status": "completed", "run_name": run_dir.name, "metrics": {"retained_loss": 4.2},
        "totals": {"steps": 16, "flops_train": 1e9}}))
    (run_dir / "metrics.jsonl").write_text('{"event": "eval", "step": 16}\n')


def i23_18_closing_table_relative_runs_dir(tmp_path, monkeypatch, request) -> None:
    """The grid's closing table with the default relative runs_dir (runs/<sweep>): the points' run directories are
    `runs/<sweep>/<run>` relative to the working directory, and every completed one is read as completed (it was
    looked for in runs/<sweep>/runs/<sweep>/<run> and reported pending)."""
    from sweeps.sweep_table import Point, build_table, not_completed

    monkeypatch.chdir(tmp_path)
    sweep_dir = Path("runs/replay_vs_scale_quick")  # what hydra.sweep.dir=${runs_dir} gives
    names = ["alpha=0,k=0,model=cpu-0.3m,seed=0", "alpha=0.5,k=8,model=cpu-0.3m,seed=0"]
    for name in names:
        _completed_run(sweep_dir / name)
    table = build_table(sweep_dir, [Point(f"point {i}", sweep_dir / name, "completed") for i, name in enumerate(names)])
    assert [row["status"] for row in table["runs"]] == ["completed", "completed"], table
    assert table["counts"]["completed"] == 2 and table["counts"]["pending"] == 0
    assert not_completed(table) == 0
    assert [row["retained_loss"] for row in table["runs"]] == [4.2, 4.2]


def i23_20_k_refusal_names_cpu_paper(tmp_path, monkeypatch, request) -> None:
    """The card's `k=100,500,1000` on the default config is refused naming `+experiment=cpu_paper`, the README's
    way to run that grid, and the preset does give every task at least CPU_PAPER_MIN_STEPS steps."""
    from mer.config.run_config import CPU_PAPER_MIN_STEPS, RunConfig, to_dataclass

    for k in (100, 500, 1000):
        assert "+experiment=cpu_paper" in config_refusal(["alpha=0", f"k={k}"])
    assert "+experiment=cpu_paper" not in config_refusal(["alpha=0", "k=5000"])  # the preset would not fit it either
    preset = to_dataclass(compose(["+experiment=cpu_paper", "alpha=0", "k=0"]), RunConfig)
    assert min(preset.task_steps) == CPU_PAPER_MIN_STEPS


def i23_20_table_reason_short_full_in_json(tmp_path, monkeypatch, request) -> None:
    """A refused point's ~650-character reason is cut to its first sentence in the printed table (it was printed in
    full in the reason column, after the point's own log line had printed it already), which still says what is
    wrong and the fix; sweep_table.json and summary.json keep it whole."""
    from sweeps.status import format_status
    from sweeps.sweep_table import Point, build_table

    reason = config_refusal(["alpha=0", "k=100"])
    assert len(reason) > 500
    run_dir = tmp_path / "alpha=0,k=100"
    table = build_table(tmp_path, [Point("k=100", run_dir, "refused", reason)])
    text = format_status(table)
    row = next(line for line in text.splitlines() if line.startswith("refused"))
    assert reason not in text and len(row) < 200, row
    shown = row[row.index("k=100 cannot fire"):]
    assert "k<=20" in shown and "+experiment=cpu_paper" in shown, shown  # the default run: 20 steps a task at alpha=0
    assert "full reason" in text  # says where the whole reason is
    assert table["runs"][0]["error"] == reason


def _python(code: str, **env: str) -> str:
    """stdout of `python -c code` in a fresh process (its own caches), with `env` added."""
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, env={**os.environ, **env}, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


RATE = ("import json; from mer.compute.mfu import cpu_rate, device_peak_flops; import torch; r = cpu_rate(); "
        "print(json.dumps([r.flops_per_s, r.cached, r.disturbed, device_peak_flops(torch.device('cpu'), 'fp32')[1]]))")


def i23_21_cpu_rate_cached_per_machine(tmp_path, monkeypatch, request) -> None:
    """The CPU matmul rate is measured at most once per process and cached per machine (it was measured at every
    start, on a busy machine too): an undisturbed cached rate is used without measuring, and said to be cached; a
    disturbed one is measured again, keeping the better of the two."""
    cache = tmp_path / "cpu_rate.json"
    first = json.loads(_python(RATE, MER_CPU_RATE_CACHE=str(cache)))
    assert first[0] > 1e8 and first[1] is False
    entries = json.loads(cache.read_text())
    assert len(entries) == 1
    key, entry = next(iter(entries.items()))
    assert {"flops_per_s", "measured_at", "cpu_share", "load"} <= set(entry), entry
    # As if an earlier start had measured on a quiet machine: that rate is used, nothing is measured.
    cache.write_text(json.dumps({key: {**entry, "flops_per_s": 1.234e10, "cpu_share": 0.95}}))
    rate, cached, disturbed, source = json.loads(_python(RATE, MER_CPU_RATE_CACHE=str(cache)))
    assert (rate, cached, disturbed) == (1.234e10, True, False) and "cached" in source, source
    # A disturbed earlier measurement is not trusted: measured again, the better rate kept.
    cache.write_text(json.dumps({key: {**entry, "flops_per_s": 1.0, "cpu_share": 0.1}}))
    rate, cached, _, _ = json.loads(_python(RATE, MER_CPU_RATE_CACHE=str(cache)))
    assert rate > 1e8 and cached is False
    assert json.loads(cache.read_text())[key]["flops_per_s"] == rate


def i23_21_busy_machine_is_said(tmp_path, monkeypatch, request) -> None:
    """Measured while other processes hold every core (real busy loops, three per core), the matmul rate and the
    plan's timing say that the machine was busy and the estimate may be off (they said nothing)."""
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(3 * (os.cpu_count() or 1))]
    try:
        time.sleep(1.0)
        out = _python(RATE + "\nfrom mer.model.llama import get_preset; from mer.plan.timing import measured_cpu_rate; "
                      "m = get_preset('cpu-0.3m'); key = tuple(sorted((k, v) for k, v in vars(m).items() "
                      "if k not in ('name', 'init_from'))); t = measured_cpu_rate(key, 512, 8, 10**6, 0.1, 2**33); "
                      "print(json.dumps([t.disturbed, t.how]))", MER_CPU_RATE_CACHE="")
    finally:
        for process in busy:
            process.kill()
            process.wait()
    matmul, timing = (json.loads(line) for line in out.strip().splitlines())
    assert matmul[2] is True and "the machine was busy while measuring" in matmul[3], matmul
    assert timing[0] is True and "the machine was busy while timing" in timing[1], timing


def i23_21_one_timed_row_scales_to_the_micro_batch(tmp_path, monkeypatch, request) -> None:
    """Where one row's step takes more than STEP_SECONDS / 2 (a larger model, or any model on a busy machine), only
    one row is timed; that one row's time stood for the whole micro-batch, so such a model was planned up to
    micro-batch times too fast (cpu-0.5m planned below cpu-0.3m). It is now scaled by the rows (exact numbers)."""
    from mer.plan.timing import micro_batch_seconds

    assert micro_batch_seconds(0.5, 1, None, 8) == 4.0  # was 0.5: one row's time for 8 rows
    assert micro_batch_seconds(0.5, 1, None, 1) == 0.5
    assert micro_batch_seconds(0.1, 4, 0.4, 16) == pytest.approx(1.6)  # 0.1 per row, no fixed part
    assert micro_batch_seconds(0.3, 4, 0.6, 8) == pytest.approx(0.3 + 0.1 * 7)  # 0.2 fixed + 0.1 per row
    assert micro_batch_seconds(0.3, 4, 0.2, 8) == pytest.approx(0.3 + 0.05 * 7)  # noise: no fixed part told apart


I23_CASES = [
    pytest.param(i23_18_closing_table_relative_runs_dir, id="i23_18_closing_table_relative_runs_dir"),
    pytest.param(i23_20_k_refusal_names_cpu_paper, id="i23_20_k_refusal_names_cpu_paper"),
    pytest.param(i23_20_table_reason_short_full_in_json, id="i23_20_table_reason_short_full_in_json"),
    pytest.param(i23_21_cpu_rate_cached_per_machine, id="i23_21_cpu_rate_cached_per_machine"),
    pytest.param(i23_21_busy_machine_is_said, id="i23_21_busy_machine_is_said"),
    pytest.param(i23_21_one_timed_row_scales_to_the_micro_batch, id="i23_21_one_timed_row_scales_to_the_micro_batch"),
]


@pytest.mark.parametrize("case", I23_CASES)
def test_issue_23_newcomer_cases(case, tmp_path, monkeypatch, request):
    case(tmp_path, monkeypatch, request)


def _tiny_cli(small_bible) -> list[str]:
    """Overrides of a two-task run of seconds on the session's small Bible cache (prepared already)."""
    cfg = small_bible[0]
    tasks = ",".join(f"{{name:{t.name},max_train_documents:{t.max_train_documents}}}" for t in cfg.tasks[:2])
    return [f"data.tasks=[{tasks}]", f"data.data_dir={cfg.data_dir}", f"data.tokenizer.vocab_size={cfg.tokenizer.vocab_size}",
            f"data.tokenizer.train_chars_per_task={cfg.tokenizer.train_chars_per_task}", "model=cpu-0.5m",
            "model.seq_len=32", "optim.batch_size=8", "data.budget_tokens=512", "data.eval_tokens=65", "threads=1"]


def _mer_run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    env.pop("HYDRA_FULL_ERROR", None)
    return subprocess.run([sys.executable, "-m", "mer.run", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=900)


def i23_18_finished_sweep_default_runs_dir_exits_0(tmp_path, request) -> None:
    """A grid whose points all complete, launched from a folder with a relative runs_dir (as `+sweep=...` presets
    set it), ends with every point completed and exit code 0, also when launched again (it said `0 completed ...
    pending` and `N of N points refused/failed`, exit 1)."""
    args = ["-m", "runs_dir=runs/quick", "k=0,2", *_tiny_cli(request.getfixturevalue("small_bible"))]
    for attempt in ("first", "again"):
        proc = _mer_run(args, tmp_path)
        out = proc.stdout + proc.stderr
        assert proc.returncode == 0, (attempt, out[-3000:])
        assert "runs/quick (grid of 2 expected): 2 completed, 0 running" in out and "refused/failed" not in out, out
    assert "python -m analysis.report runs/quick --out runs/quick/report" in proc.stdout  # item 22: what next


def i23_20_card_grid_prints_each_reason_once(tmp_path, request) -> None:
    """The card's `-m alpha=0,0.25,0.5 k=100,500,1000` on the default config: 9 refusals, each reason printed whole
    once (the point's log line) and cut to its first sentence in the table, naming +experiment=cpu_paper."""
    proc = _mer_run(["-m", "alpha=0,0.25,0.5", "k=100,500,1000", f"runs_dir={tmp_path / 'runs'}",
                     f"data.data_dir={tmp_path / 'data'}"], tmp_path)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1 and "9 of 9 points refused/failed" in out, out[-3000:]
    assert out.count("Fix it with") == 9 and out.count("cannot fire") == 18, out  # whole once, short once
    table = out[out.index("status "):]
    rows = [line for line in table.splitlines() if line.startswith("refused")]
    assert len(rows) == 9 and all("+experiment=cpu_paper" in row and len(row) < 200 for row in rows), rows
    assert not (tmp_path / "data").exists()


def i23_22_run_end_says_where_and_next(tmp_path, request) -> None:
    """A run ends naming its summary.json and the commands to run next; its provenance records the command as typed,
    `python -m mer.run ...`, not the file `.../mer/run.py`."""
    proc = _mer_run([f"runs_dir={tmp_path / 'runs'}", "run_name=r", *_tiny_cli(request.getfixturevalue("small_bible"))],
                    tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = tmp_path / "runs" / "r"
    assert f"results: {run / 'summary.json'}" in proc.stdout, proc.stdout[-2000:]
    assert f"next: python -m analysis.report {run} --out {run / 'report'}" in proc.stdout
    assert f"python -m mer.export {run} --out" in proc.stdout
    command = json.loads((run / "provenance.json").read_text())["command"]
    assert command.startswith("python -m mer.run runs_dir="), command


def i23_21_sweep_plan_one_line_per_point(tmp_path, request) -> None:
    """A sweep's plan prints one line per point and the totals, as docs/plan.md says (each point printed its own
    ~22-line plan first)."""
    proc = _mer_run(["-m", "alpha=0,0.5", "k=0", "model=cpu-0.3m", "plan=true", f"runs_dir={tmp_path / 'runs'}",
                     f"data.data_dir={tmp_path / 'data'}"], tmp_path)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert "plan of run" not in out and "memory per device" not in out, out
    table = out[out.index("point "):out.index("(saved in")].strip().splitlines()
    assert [line.split()[0] for line in table[1:3]] == ["alpha=0", "alpha=0.5"], table
    assert table[3].startswith("total of 2 points") and len(table) <= 5, table  # + a busy-machine note at most


I23_SLOW_CASES = [
    pytest.param(i23_18_finished_sweep_default_runs_dir_exits_0, id="i23_18_finished_sweep_default_runs_dir_exits_0"),
    pytest.param(i23_20_card_grid_prints_each_reason_once, id="i23_20_card_grid_prints_each_reason_once"),
    pytest.param(i23_21_sweep_plan_one_line_per_point, id="i23_21_sweep_plan_one_line_per_point"),
    pytest.param(i23_22_run_end_says_where_and_next, id="i23_22_run_end_says_where_and_next"),
]


@pytest.mark.slow
@pytest.mark.parametrize("case", I23_SLOW_CASES)
def test_issue_23_newcomer_commands(case, tmp_path, request):
    case(tmp_path, request)


def _refuse_nan(constant: str) -> None:
    raise ValueError(f"not JSON: {constant}")


def _strictly_parsed(path: Path) -> int:
    """Parse every JSON / JSONL file under `path` refusing NaN and Infinity; returns how many were read."""
    read = 0
    for file in sorted(path.rglob("*")):
        if not file.is_file() or "discarded" in file.name:
            continue
        if file.suffix == ".json":
            json.loads(file.read_text(), parse_constant=_refuse_nan)
        elif file.suffix == ".jsonl":
            for line in file.read_text().splitlines():
                if line.strip():
                    json.loads(line, parse_constant=_refuse_nan)
        else:
            continue
        read += 1
    return read


def test_i23_05_a_one_task_run_writes_only_strict_json(small_bible, tmp_path):
    """A run of one task has no forgetting or backward transfer: summary.json holds null with the reason (never a
    bare NaN), and every JSON file the run and its data preparation wrote parses with NaN refused; launched again,
    the completed run is skipped and its summary (with those nulls) printed."""
    import dataclasses

    from mer_testing import tiny_run_config

    from mer.launch.runner import run_training

    data = dataclasses.replace(small_bible[0], tasks=small_bible[0].tasks[:1])
    cfg = tiny_run_config(data, tmp_path / "runs", budget_tokens=512)
    run_training(cfg, "one", _resolved(cfg))
    run = tmp_path / "runs" / "one"
    summary = json.loads((run / "summary.json").read_text(), parse_constant=_refuse_nan)
    assert summary["status"] == "completed"
    assert summary["metrics"]["forgetting"] is None and summary["metrics"]["backward_transfer"] is None
    assert "a run of one task has none" in summary["metrics_undefined"]["forgetting"]
    assert set(summary["metrics_undefined"]) == {"forgetting", "backward_transfer"}
    assert _strictly_parsed(run) >= 3  # summary.json, config.json, provenance.json, metrics.jsonl, the manifest
    assert _strictly_parsed(Path(cfg.data.data_dir)) >= 2
    assert run_training(cfg, "one", _resolved(cfg))["metrics"]["forgetting"] is None  # skipped, printed


def test_i23_05_non_finite_numbers_are_written_as_null():
    """The one JSON writer every file goes through: NaN and infinities become null, nested and as numpy scalars."""
    import numpy as np

    from mer.files.strict_json import dumps

    text = dumps({"a": float("nan"), "b": [1.0, float("inf"), {"c": np.float64("-inf")}], "d": np.float32(2.5)})
    assert json.loads(text, parse_constant=_refuse_nan) == {"a": None, "b": [1.0, None, {"c": None}], "d": 2.5}


def test_i23_16_a_huge_document_is_tokenized_in_bounded_pieces(small_bible, tmp_path):
    """One 3 MB document (a single JSONL line, say) reaches the tokenizer in pieces of at most PIECE_CHARS and
    batches of about BATCH_CHARS, so memory is bounded whatever a document's length; the tokens still decode to the
    whole document, followed by a single end-of-text token."""
    import numpy as np

    from mer.data import shards

    tokenizer = small_bible[1].tokenizer
    seen: list[list[int]] = []

    def recording(texts, **kwargs):  # the real tokenizer, with the lengths of what it was given recorded
        seen.append([len(t) for t in texts])
        return tokenizer(texts, **kwargs)

    recording.eos_token_id = tokenizer.eos_token_id
    words = " ".join(f"word{i % 997} and more" for i in range(200_000))  # about 3.3 M characters
    documents = ["a short first document", words, "a short last document"]
    info = shards.write_split(iter(documents), recording, tmp_path / "train.bin", np.dtype("uint16"))
    assert max(max(call) for call in seen) <= shards.PIECE_CHARS
    assert max(sum(call) for call in seen) <= shards.BATCH_CHARS + shards.PIECE_CHARS
    assert info["documents"] == 3 and info["characters"] == sum(len(d) for d in documents)
    ids = np.fromfile(tmp_path / "train.bin", dtype=np.uint16).tolist()
    eos = tokenizer.eos_token_id
    assert ids.count(eos) == 3 and ids[-1] == eos
    first, second = ids.index(eos), ids.index(eos, ids.index(eos) + 1)
    assert tokenizer.decode(ids[first + 1:second]) == words


def test_i23_15_an_evaluation_batch_too_large_is_refused_naming_eval_batch_size(small_bible, tmp_path):
    """When an evaluation batch is the memory peak, the refusal names eval.batch_size, not fixes of the training
    step (optim.grad_accum, activation_checkpointing) that would not help."""
    import dataclasses

    from mer_testing import tiny_run_config

    from mer.plan.fit import fit_refusal

    cfg = tiny_run_config(small_bible[0], tmp_path)
    cfg = dataclasses.replace(cfg, eval=dataclasses.replace(cfg.eval, batch_size=50_000_000))
    refusal = fit_refusal(cfg, "r")
    assert refusal is not None and "eval.batch_size=50000000" in refusal, refusal
    assert "a smaller eval.batch_size" in refusal and "grad_accum" not in refusal, refusal


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
