"""Bad input, case by case: every case gets a clear message naming the key or file, and nothing already written
changes (the runs and data folders are snapshotted before and compared after: every file's size and sha256).

Configs go through Hydra's compose API and `to_dataclass`, as `python -m mer.run` composes them; corpora through
`prepare_data`; run directories and checkpoints through `run_training`; Optuna storages through the sweeper's own
`_open_study`. A handful of cases run the real command line: exit code 2, one message, no traceback.
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

    from mer.config import register_configs
    from sweeps.plugins import register_hydra_plugins

    register_configs()
    register_hydra_plugins()
    with initialize_config_module(config_module="mer.conf", version_base="1.3"):
        return hydra_compose("config", overrides=overrides)


def config_refusal(overrides: list[str]) -> str:
    """The message that refuses `overrides`: Hydra's composition error or the dataclasses' check."""
    from hydra.errors import HydraException

    from mer.config import RunConfig, to_dataclass

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
    from mer.config import RunConfig, to_dataclass

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
    from mer.runner import RunConfigMismatch, run_training

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
