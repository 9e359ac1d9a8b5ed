"""Fault injection: `python -m mer.run` killed with SIGKILL (kill -9) at chosen and at chance moments, then run
again with the same command until it completes, must give the uninterrupted run bit for bit (docs/run_directory.md):
every metrics.jsonl line (no line duplicated or missing), the summary and the final checkpoint.

Each test is a chain of trials on one run directory: launch, kill, launch the same command again (which resumes and
is itself killed at the chain's next moment), ..., and a last launch that completes. After every kill the test
checks that the kill landed in the phase it targets (so no trial passes without having hit its target) and that
every complete line already written equals the uninterrupted run's line at that place. The moments are drawn from
a seeded generator per chain (reproducible; change SEED to draw others). How the kills are made: tests/fault_helpers.py.
"""

from __future__ import annotations

import random
import signal
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from fault_helpers import (
    RUN_NAME,
    Finished,
    assert_killed,
    assert_prefix_of,
    assert_same_run,
    command,
    complete_lines,
    kill_when,
    run,
    torn_tail,
)

SEED = 12

CONFIGS = {
    # Replay by reference, Reptile every 5 steps plus the task-end interpolation: 12 steps per task, 36 in all;
    # the checkpoints of steps 12, 24 and 36 fall on a task's last step.
    "reptile": ["alpha=0.25", "k=5", "eps=0.5", "reptile_at_task_end=true"],
    # Replay of copied tokens (a memory-mapped token file in the run directory) with the background prefetch: 18
    # steps per task, 54 in all.
    "copy": ["alpha=0.5", "buffer.storage=copy", "buffer.prefetch=true"],
}


@dataclass(frozen=True)
class Kill:
    """One trial. `how`: "point" (MER_FAULT_AT=<target>:n, n drawn from [lo, hi]), "lines" (SIGKILL from
    outside once metrics.jsonl holds n more complete lines than before the launch, n drawn from [lo, hi]),
    "staging" (SIGKILL from outside once data preparation has a staging folder), "file" (SIGKILL from outside
    once the run directory holds `target`). `tear_state`: after the kill, cut checkpoint.tmp/state.pt to a
    random prefix, which is what a kill in the middle of torch.save leaves (the hook cannot stop inside it)."""

    how: str
    target: str = ""
    lo: int = 1
    hi: int = 1
    tear_state: bool = False


CHAINS = {
    "checkpoint-writes": ("reptile", [Kill("point", "checkpoint_commit", 1, 6),
                                      Kill("point", "checkpoint_commit", 1, 4, tear_state=True),
                                      Kill("point", "checkpoint_between_renames", 2, 4)]),
    "appends-and-evaluations": ("reptile", [Kill("point", "metrics_append", 2, 25), Kill("point", "evaluation", 1, 4),
                                            Kill("point", "metrics_append", 1, 12), Kill("point", "evaluation", 1, 3)]),
    # n counts the boundaries this process reaches: a resume at a boundary's checkpoint reaches it again first.
    "task-boundaries": ("reptile", [Kill("point", "task_boundary", 1, 1), Kill("point", "task_boundary", 2, 2),
                                    Kill("point", "task_boundary", 2, 2)]),
    "chance-moments": ("reptile", [Kill("lines", lo=1, hi=12)] * 4),
    "start-up": ("reptile", [Kill("staging"), Kill("file", "config.json"), Kill("point", "evaluation", 1, 1)]),
    "copied-replay": ("copy", [Kill("point", "task_boundary", 1, 1), Kill("lines", lo=1, hi=15),
                               Kill("point", "metrics_append", 1, 15),
                               Kill("point", "checkpoint_commit", 1, 4, tear_state=True),
                               Kill("point", "checkpoint_between_renames", 2, 4)]),
}


@pytest.fixture(scope="module")
def shared_data(tmp_path_factory) -> Path:
    """One prepared data cache for the module (the first reference run fills it)."""
    return tmp_path_factory.mktemp("fault_data")


@pytest.fixture(scope="module")
def reference(tmp_path_factory, shared_data) -> Callable[[str], Finished]:
    """The uninterrupted run of a config, trained once per module with the same command the trials use."""
    done: dict[str, Finished] = {}

    def get(config: str) -> Finished:
        if config not in done:
            runs = tmp_path_factory.mktemp(f"reference_{config}")
            result = run(command(CONFIGS[config], runs, shared_data), cwd=runs)
            assert result.returncode == 0, result.stderr[-3000:]
            done[config] = Finished.read(runs / RUN_NAME)
        return done[config]

    return get


def _staging_folders(data_dir: Path) -> list[Path]:
    return [p for p in data_dir.rglob(".*staging-*") if p.is_dir()] if data_dir.exists() else []


def _where(run_dir: Path) -> str:
    """Where a kill from outside landed, as far as the files tell."""
    metrics = run_dir / "metrics.jsonl"
    records = complete_lines(metrics)
    notes = [f"{len(records)} complete lines, the last at step {records[-1]['step']}"]
    if torn_tail(metrics):
        notes.append("inside a metrics line")
    if (run_dir / "checkpoint.tmp").exists():
        notes.append("inside a checkpoint write")
    return ", ".join(notes)


def _trial(kill: Kill, rng: random.Random, args: list[str], tmp_path: Path, run_dir: Path, data_dir: Path,
           reference: Finished) -> str:
    """Launch once, kill as `kill` says, check the kill landed in its phase; returns what was targeted."""
    metrics = run_dir / "metrics.jsonl"
    before = len(complete_lines(metrics))
    if kill.how == "point":
        fault = f"{kill.target}:{rng.randint(kill.lo, kill.hi)}"
        result = run(args, cwd=tmp_path, fault=fault)
        assert_killed(result, fault)
        landed = fault
    elif kill.how == "lines":
        wanted = before + rng.randint(kill.lo, kill.hi)
        assert wanted < len(reference.records), "the kill would come after the run's end"
        assert_killed(kill_when(args, tmp_path, lambda: len(complete_lines(metrics)) >= wanted))
        assert len(complete_lines(metrics)) >= wanted
        landed = f"from outside once metrics.jsonl had {wanted} lines ({_where(run_dir)})"
    elif kill.how == "staging":
        assert not _staging_folders(data_dir), "the data cache must be fresh for a kill during preparation"
        assert_killed(kill_when(args, tmp_path, lambda: bool(_staging_folders(data_dir))))
        # The staging folder is removed when preparation ends in any way but a kill: it is there, so the kill
        # came during preparation, before the run directory was written.
        assert _staging_folders(data_dir) and not metrics.exists()
        landed = "from outside during data preparation"
    elif kill.how == "file":
        assert_killed(kill_when(args, tmp_path, lambda: (run_dir / kill.target).exists()))
        assert not (run_dir / "checkpoint").exists()  # in the start-up, before the first checkpoint
        landed = f"from outside once {kill.target} was written"
    else:
        raise ValueError(kill.how)

    records, tail = complete_lines(metrics), torn_tail(metrics)
    # The targeted phase was hit, as the files show.
    if kill.target == "checkpoint_commit":
        tmp_state = run_dir / "checkpoint.tmp" / "state.pt"
        assert tmp_state.is_file()
        torch.load(tmp_state, weights_only=True)  # complete: killed between writing it and the renames
        if kill.tear_state:
            size = tmp_state.stat().st_size
            with open(tmp_state, "r+b") as handle:
                handle.truncate(rng.randrange(1, size))
            landed += " (state.pt then cut short)"
    elif kill.target == "checkpoint_between_renames":
        assert (run_dir / "checkpoint.old" / "state.pt").is_file() and (run_dir / "checkpoint.tmp").is_dir()
        assert not (run_dir / "checkpoint").exists()
    elif kill.target == "metrics_append":
        # Half a line, no newline: the start of the line due there (compared up to the first timing field).
        assert tail.startswith(b'{"event": ') and len(tail) > 10, tail
        assert reference.raw_lines[len(records)].encode().startswith(tail.split(b', "wall_time"')[0])
    elif kill.target == "evaluation":
        assert reference.records[len(records)]["event"] == "eval"  # the next line due was this evaluation's
    elif kill.target == "task_boundary":
        assert records[-1]["event"] == "eval" and records[-1]["boundary"] is True
    assert_prefix_of(records, reference)
    summary = run_dir / "summary.json"  # the run had not finished (its last line may be written already)
    assert not summary.exists() or '"completed"' not in summary.read_text()
    return landed


@pytest.mark.slow
@pytest.mark.parametrize("chain", list(CHAINS))
def test_killed_runs_resume_to_the_uninterrupted_run(chain, reference, shared_data, tmp_path):
    config, kills = CHAINS[chain]
    expected = reference(config)
    # The start-up chain prepares its own data (its first kill lands inside the preparation).
    data_dir = tmp_path / "data" if chain == "start-up" else shared_data
    runs = tmp_path / "runs"
    args = command(CONFIGS[config], runs, data_dir)
    rng = random.Random(f"{SEED}:{chain}")
    landed = [_trial(kill, rng, args, tmp_path, runs / RUN_NAME, data_dir, expected) for kill in kills]
    print(f"{chain}: killed " + "; ".join(landed))

    result = run(args, cwd=tmp_path)  # the same command, once more: resumes and completes
    assert result.returncode == 0, result.stderr[-3000:]
    assert_same_run(runs / RUN_NAME, expected)


# ---------------------------------------------------------------------------------------------- fast tests

@pytest.mark.parametrize("mode", ["a", "ab"])
def test_the_fault_hook_does_nothing_unless_named_and_kills_at_its_hit(tmp_path, mode):
    """`MER_FAULT_AT` unset, naming another point or a later hit: the process runs on. Naming this hit: SIGKILL
    there, after half of the record's line (a torn write, to a text or a binary file) when asked for one."""
    import json
    import subprocess
    import sys

    from fault_helpers import environment

    script = (f"from mer.files.fault_points import fault_point\n"
              f"with open({str(tmp_path / 'log')!r}, {mode!r}) as handle:\n"
              f"    for i in range(3):\n"
              f"        fault_point('append', torn_write=(handle, {{'i': i, 'text': 'x' * 20}}))\n"
              f"        line = str(i) + '\\n'\n"
              f"        handle.write(line.encode() if 'b' in handle.mode else line); handle.flush()\n"
              f"print('finished')")
    for fault in (None, "other:1", "append:4"):
        result = subprocess.run([sys.executable, "-c", script], env=environment(fault), capture_output=True, text=True)
        assert result.returncode == 0 and result.stdout == "finished\n", result.stderr
    assert (tmp_path / "log").read_text() == "0\n1\n2\n" * 3
    (tmp_path / "log").unlink()
    result = subprocess.run([sys.executable, "-c", script], env=environment("append:2"), capture_output=True, text=True)
    assert_killed(result, "append:2")
    assert "finished" not in result.stdout
    line = json.dumps({"i": 1, "text": "x" * 20}) + "\n"
    assert (tmp_path / "log").read_text() == "0\n" + line[: len(line) // 2]
    result = subprocess.run([sys.executable, "-c", script], env=environment("append"), capture_output=True, text=True)
    assert result.returncode == 1 and "MER_FAULT_AT='append': expected <point>:<n>" in result.stderr


class _Crash(Exception):
    """Stands for the kill in the in-process tests below: raised at a fault point, it stops the run there."""


@pytest.fixture
def one_torch_thread():
    """One torch thread for in-process training: on 2 shared cores, two threads spinning against other processes
    made these tiny runs ten times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("module, point, hit", [
    # A checkpoint on the task's last step (checkpoint_every = steps per task), then a crash before the boundary
    # checkpoint: the resume's first record is the boundary evaluation, which logged lr 0.0 instead of the LR.
    ("mer.training.trainer", "task_boundary", 1),
    # A crash before the first checkpoint: the next start begins from step 0 and used to append its lines after
    # the crashed start's (eval 0 and the first train lines twice).
    ("mer.rundir.layout", "metrics_append", 3),
])
def test_a_crashed_run_resumes_to_the_same_metrics(small_bible, tmp_path, monkeypatch, one_torch_thread, module, point,
                                                    hit):
    """In-process twins of two kill trials of the slow suite (the regressions they found), fast enough for every
    test run: the crash is an exception raised at the fault point, which leaves the same files as a kill there."""
    import dataclasses
    import importlib
    import json

    from fault_helpers import stable
    from mer_testing import tiny_run_config

    from mer.launch.runner import run_training

    def train(cfg):
        return run_training(cfg, "run", json.loads(json.dumps(dataclasses.asdict(cfg), default=str)))

    def records(cfg):
        return [stable(json.loads(line)) for line in (tmp_path / cfg.runs_dir / "run" / "metrics.jsonl").open()]

    # 11 steps per task (2048 tokens / 6 new blocks of 32), 2 tasks, a checkpoint at each task's last step.
    data = dataclasses.replace(small_bible[0], tasks=small_bible[0].tasks[:2])
    reference = tiny_run_config(data, tmp_path / "reference", checkpoint_every=11, log_every=1)
    expected = train(reference)
    cfg = tiny_run_config(data, tmp_path / "crashed", checkpoint_every=11, log_every=1)
    hits = {"n": 0}

    def crash(name, torn_write=None):
        if name == point:
            hits["n"] += 1
            if hits["n"] == hit:
                raise _Crash(name)

    monkeypatch.setattr(importlib.import_module(module), "fault_point", crash)
    with pytest.raises(_Crash):
        train(cfg)
    monkeypatch.undo()
    resumed = train(cfg)
    assert records(cfg) == records(reference)
    assert resumed["loss_matrix"] == expected["loss_matrix"] and resumed["metrics"] == expected["metrics"]


# ------------------------------------------------------------------------------------------------- issue 23
def _holder_pid(run_dir: Path) -> int | None:
    """The pid in the run's lock record (the process that owns or last owned the run)."""
    import json

    try:
        return json.loads((run_dir / "run.lock").read_bytes().decode().strip("\x00 \n")).get("pid")
    except (OSError, ValueError):
        return None


def _alive(pid: int) -> bool:
    import os

    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


SWEEP_SIGNAL_CASES = [
    pytest.param("hydra/launcher=local", signal.SIGTERM, id="i23_17_local_launcher_sigterm_reaches_the_jobs"),
]


@pytest.mark.slow
@pytest.mark.parametrize(("launcher", "signum"), SWEEP_SIGNAL_CASES)
def test_a_signal_to_a_sweep_stops_its_jobs_with_a_checkpoint(launcher, signum, small_bible, tmp_path):
    """Issue 23 item 17: SIGTERM to a sweep on the local launcher (submitit: one process per point) ended the sweep
    in 0.3 s with no message and left its jobs training as orphans. It is passed on to the jobs: each checkpoints
    and ends `stopped`, its process gone, and the sweep exits with 143 after them; the same command finishes both."""
    import json
    import os
    import subprocess
    import sys
    import time

    from mer_testing import small_bible_cli_overrides

    sweep = tmp_path / "sweep"
    tiny = [a for a in small_bible_cli_overrides(small_bible[0].data_dir) if not a.startswith(("data.tasks", "data.budget"))]
    tasks = ",".join(f"{{name:{t.name},max_train_documents:{t.max_train_documents}}}" for t in small_bible[0].tasks[:2])
    # 30,000 new tokens per task at 6 new blocks of 32 tokens a step: 157 steps per task, so both jobs train a while.
    args = ["-m", "mer.run", "-m", launcher, "seed=0,1", f"runs_dir={sweep}", f"data.tasks=[{tasks}]", *tiny,
            "data.budget_tokens=30000", "checkpoint_every=1000", "hydra.launcher.poll_s=0.2"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    log = tmp_path / "sweep.log"
    proc = subprocess.Popen([sys.executable, *args], cwd=tmp_path, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)

    def training_runs() -> list[Path]:
        return [p.parent for p in sweep.glob("*/metrics.jsonl") if p.read_text().count('"event": "train"') >= 2]

    deadline = time.monotonic() + 600
    while len(training_runs()) < 2:
        assert proc.poll() is None, log.read_text()[-3000:]
        assert time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.2)
    runs = training_runs()
    pids = [_holder_pid(run) for run in runs]
    assert all(pids) and all(_alive(pid) for pid in pids), pids
    proc.send_signal(signum)
    assert proc.wait(timeout=300) == 143, log.read_text()[-3000:]
    out = log.read_text()
    assert f"sweep stopped by signal {int(signum)}" in out and "Run the same command again to resume" in out, out[-3000:]
    for run_dir, pid in zip(runs, pids):
        summary = json.loads((run_dir / "summary.json").read_text())
        assert summary["status"] == "stopped", summary
        assert (run_dir / "checkpoint").is_dir()
        assert not _alive(pid), f"the job {pid} of {run_dir.name} outlived its sweep"
    again = subprocess.run([sys.executable, *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-3000:]
    assert all(json.loads((run_dir / "summary.json").read_text())["status"] == "completed" for run_dir in runs)


# ------------------------------------------------------------------------------------------------- trackers
_TRACKER_SCRIPT = """
import json, os, signal, sys, time
from pathlib import Path
from mer.trackers.config import LoggerConfig, WandbConfig
from mer.trackers.dispatch import open_trackers

run_dir, phase = Path(sys.argv[1]), sys.argv[2]
trackers = open_trackers(LoggerConfig(wandb=WandbConfig(mode="offline")), run_dir, "run", run_dir.parent, {"a": 1})
metrics = run_dir / "metrics.jsonl"
if phase == "kill":  # 10 steps of a train and an eval record each, the way a run appends and queues them
    for step in range(1, 11):
        for event in ("train", "eval"):
            record = {"event": event, "step": step, "loss": float(step)}
            with open(metrics, "a") as handle:
                handle.write(json.dumps(record) + "\\n")
            trackers.record(record)
    deadline = time.monotonic() + 60
    while not trackers._queue.empty() and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(1)  # the trackers' thread has logged the last batch, flushed and written trackers.json: kill -9
    os.kill(os.getpid(), signal.SIGKILL)
trackers.close({"status": "completed", "error": None, "totals": {"steps": 10}})
"""


def _wandb_steps(run_dir: Path) -> dict[str, set[int]]:
    """metric -> the steps W&B's offline run files hold it at."""
    import json

    from wandb_offline import records

    steps: dict[str, set[int]] = {}
    for path in sorted(run_dir.glob("wandb/offline-run-*/run-*.wandb")):
        for record in records(path):
            if record.WhichOneof("record_type") == "history":
                for item in record.history.item:
                    key = item.key or "/".join(item.nested_key)
                    if not key.startswith("_"):
                        steps.setdefault(key, set()).add(record.history.step.num)
                        json.loads(item.value_json)
    return steps


@pytest.mark.skipif(__import__("importlib").util.find_spec("wandb") is None, reason="wandb is not installed")
def test_i23_02_wandb_points_count_as_sent_only_once_confirmed(tmp_path):
    """kill -9 right after trackers.json was written: every record it counts as sent is in W&B's run file (W&B
    keeps the latest step's row open in its service process, which dies with the run), and the relaunch sends the
    unconfirmed ones, so W&B ends with every point."""
    import json
    import os
    import subprocess
    import sys

    run_dir = tmp_path / "runs" / "run"
    run_dir.mkdir(parents=True)
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "WANDB_CONSOLE": "off",
           "WANDB_CONFIG_DIR": str(tmp_path / "wandb-config"), "WANDB_CACHE_DIR": str(tmp_path / "wandb-cache")}
    repo = Path(__file__).resolve().parents[1]
    killed = subprocess.run([sys.executable, "-c", _TRACKER_SCRIPT, str(run_dir), "kill"], cwd=repo, env=env,
                            capture_output=True, text=True, timeout=300)
    assert killed.returncode == -9, killed.stderr[-3000:]
    sent = json.loads((run_dir / "trackers.json").read_text())["wandb"]["sent"]
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    held = _wandb_steps(run_dir)
    for record in records[:sent]:  # what trackers.json counts as sent is in W&B's file
        name = f"{record['event']}/loss"
        assert record["step"] in held.get(name, set()), (sent, record, held)
    resumed = subprocess.run([sys.executable, "-c", _TRACKER_SCRIPT, str(run_dir), "resume"], cwd=repo, env=env,
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    held = _wandb_steps(run_dir)
    assert {name: held.get(name) for name in ("train/loss", "eval/loss")} == dict.fromkeys(
        ("train/loss", "eval/loss"), set(range(1, 11)))
    assert json.loads((run_dir / "trackers.json").read_text())["wandb"]["sent"] == len(records)


# ------------------------------------------------------------------------------------------------- full and read-only disks
@pytest.fixture
def tmpfs(tmp_path):
    """`tmpfs(size, read_only=False)`: a tmpfs of its own under tmp_path, or a skip saying why there cannot be one."""
    import subprocess
    import uuid

    mounted = []

    def mount(size: str, read_only: bool = False) -> Path:
        point = tmp_path / f"fs{len(mounted)}"
        point.mkdir()
        options = f"size={size}" + (",ro" if read_only else "")
        made = subprocess.run(["mount", "-t", "tmpfs", "-o", options, f"mer-test-{uuid.uuid4().hex[:6]}", str(point)],
                              capture_output=True, text=True, check=False)
        if made.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here (needs root and mount rights): {made.stderr.strip()}")
        mounted.append(point)
        return point

    yield mount
    for point in mounted:
        subprocess.run(["umount", "-l", str(point)], check=False)


def _fill(directory: Path) -> Path:
    filler = directory / "filler"
    with open(filler, "wb") as handle:
        try:
            while True:
                handle.write(b"\0" * 65536)
                handle.flush()
        except OSError as error:
            assert error.errno == 28  # ENOSPC
    return filler


def _one_task_config(small_bible, runs: Path, data: Path):
    import dataclasses

    from mer_testing import tiny_run_config

    cfg = tiny_run_config(dataclasses.replace(small_bible[0], tasks=small_bible[0].tasks[:1]), runs,
                          budget_tokens=512)
    return dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, data_dir=str(data)))


def test_i23_15_a_full_data_cache_disk_is_named_not_the_runs_folder(small_bible, tmp_path, tmpfs):
    """The data cache's device fills up while a run prepares its data: the one line names the data cache, not the
    run directory (whose device has room), and the new run leaves nothing behind."""
    import dataclasses
    import json

    from mer.files.atomic import DiskFull
    from mer.launch.runner import run_training

    data = tmpfs("64k")
    cfg = _one_task_config(small_bible, tmp_path / "runs", data)
    with pytest.raises(DiskFull) as full:
        run_training(cfg, "run", json.loads(json.dumps(dataclasses.asdict(cfg), default=str)))
    message = str(full.value)
    assert f"no space left on the device of {data}" in message, message
    assert str(tmp_path / "runs") not in message, message
    assert not (tmp_path / "runs" / "run").exists()


@pytest.mark.parametrize("which", ["i23_14_read_only_runs_dir", "i23_14_read_only_data_dir"])
def test_i23_14_a_read_only_folder_is_refused_in_one_line(which, small_bible, tmp_path, tmpfs):
    import dataclasses
    import json

    from mer.data.corpus import DataError
    from mer.launch.runner import run_training
    from mer.rundir.lock import RunDirUnusable

    read_only = tmpfs("64k", read_only=True)
    if which == "i23_14_read_only_runs_dir":
        cfg = _one_task_config(small_bible, read_only, small_bible[0].data_dir)
        expected = [str(read_only / "run"), "runs_dir must be a folder this process can write"]
    else:
        cfg = _one_task_config(small_bible, tmp_path / "runs", read_only)
        expected = [f"data.data_dir={read_only} is not writable by this process", "MER_DATA_DIR"]
    with pytest.raises((RunDirUnusable, DataError)) as refused:
        run_training(cfg, "run", json.loads(json.dumps(dataclasses.asdict(cfg), default=str)))
    for part in expected:
        assert part in str(refused.value), str(refused.value)
    assert "\n" not in str(refused.value)


def test_i23_15_a_status_put_into_run_lock_gives_way_to_summary_json(tmpfs):
    """summary.json could not be written while the run was running (a full disk): the status went into run.lock.
    Once space is back and the run ends, summary.json says how it ended, run.lock no longer holds a status that
    readers would prefer, and the recorded reason does not claim the run is running."""
    from mer.files.atomic import DiskFull
    from mer.rundir.layout import RunLock, read_summary
    from mer.rundir.lock import read_record
    from mer.rundir.status import StatusWriter, effective_error, effective_status

    run_dir = tmpfs("1536k") / "run"
    with RunLock(run_dir) as lock:
        status = StatusWriter(run_dir / "summary.json", lock, {"status": "running", "error": None, "run_name": "run"})
        status.write()
        filler = _fill(run_dir.parent)
        with pytest.raises(DiskFull) as full:
            status.write()
        assert read_record(run_dir)["status"] == "running"
        filler.unlink()  # space is back
        with pytest.raises(DiskFull):
            status.record_end(full.value)
    summary = read_summary(run_dir)
    assert summary["status"] == "failed" and "the run is running" not in summary["error"], summary
    assert effective_status(run_dir, summary) == "failed"
    assert "the run is running" not in (effective_error(run_dir, summary) or "")
    assert not (run_dir / "run.lock").exists() or "status" not in (read_record(run_dir) or {})


# ------------------------------------------------------------------------------ issue 20: sharded preparation
def test_i20_two_preparations_at_once_share_the_pieces(tmp_path):
    """Two `python -m mer.data.prepare` of the same data started together (two array launches, two jobs): both
    succeed, every piece is built by exactly one of them (a busy piece is left to its owner, then waited for), and
    the shards equal one preparation's."""
    import re

    from prepare_helpers import PIECE, cli_args, data_config, folder_bytes, run_prepare_async, write_corpus

    from mer.data.pipeline import prepare_data
    from mer.data.prepare_config import PrepareConfig

    files = write_corpus(tmp_path)
    reference = tmp_path / "reference"
    prepared = prepare_data(data_config(reference, files), PrepareConfig(piece_bytes=PIECE))
    pieces = {info.name: info.manifest["pieces"] for info in prepared.shards}
    shared = tmp_path / "shared"
    procs = [run_prepare_async(cli_args(shared, files)) for _ in range(2)]
    outputs = [proc.communicate(timeout=600) for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0], [err[-2000:] for _, err in outputs]
    for task, n in pieces.items():
        built = [int(m.group(1)) for out, _ in outputs
                 for m in [re.search(rf"task {task}: (\d+) piece\(s\) prepared now", out)] if m]
        # A process that found the task already published prints nothing for it: it built none of its pieces.
        assert sum(built) == n, (task, built, [out for out, _ in outputs])
    assert folder_bytes(shared) == folder_bytes(reference)
    assert not list(shared.rglob(".*pieces-*"))


def test_i20_a_piece_looked_at_while_its_task_is_published_is_not_built_again(tmp_path, monkeypatch):
    """Another preparation looks at a piece while this one publishes the task (its records removed, the folder
    not yet renamed): it waits for the publication and finds the piece done, instead of building it again (the
    race that made two preparations at once build one piece twice)."""
    import threading

    from prepare_helpers import PIECE, data_config, write_corpus

    from mer.data import shard_build
    from mer.data.corpus_build import build_corpus
    from mer.data.piece_groups import plan_work
    from mer.data.shards import token_dtype
    from mer.data.tokenizer import prepare_tokenizer

    data_dir = tmp_path / "data"
    cfg = data_config(data_dir, write_corpus(tmp_path))
    corpus = build_corpus(cfg.tasks[0], data_dir)
    tokenizer, digest = prepare_tokenizer([corpus], cfg.tokenizer, data_dir)
    dtype = token_dtype(len(tokenizer))
    work = plan_work({corpus.name: corpus}, {corpus.name: {}}, digest, data_dir, PIECE)[corpus.name]
    assert len(work.pieces) > 2
    for index in range(len(work.pieces)):
        assert shard_build.build_piece(work.final, work.work, index, work.pieces, tokenizer, dtype) == "built"
    looks, publish = [], shard_build.publish_directory

    def publish_with_a_look_in_between(source, final):
        other = threading.Thread(target=lambda: looks.append(
            shard_build.build_piece(work.final, work.work, 0, work.pieces, tokenizer, dtype)))
        other.start()
        other.join(timeout=3)  # time enough to build the piece again, had it looked without waiting
        assert looks == [], looks
        publish(source, final)
        publish_with_a_look_in_between.other = other

    monkeypatch.setattr(shard_build, "publish_directory", publish_with_a_look_in_between)
    assert shard_build.finish_task(work.final, work.work, corpus, work.pieces, tokenizer, digest, dtype, {})
    publish_with_a_look_in_between.other.join(timeout=60)
    assert looks == ["done"]
    assert not list(work.final.parent.glob(".*pieces-*"))
