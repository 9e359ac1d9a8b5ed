"""Experiment trackers (docs/trackers.md): every metrics.jsonl record, the config, the summary and the status
reach TensorBoard, MLflow and W&B, read back with each library's own reader; a resumed run continues the same
tracker run without duplicate points; a tracker whose library is missing is refused before any work."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from mer_testing import tiny_run_config

from mer.config.run_config import RunConfig
from mer.launch.runner import run_training
from mer.trackers.base import Tracker
from mer.trackers.config import REQUIREMENTS, LoggerConfig, MlflowConfig, TensorBoardConfig, WandbConfig
from mer.trackers.records import flatten_config, record_metrics
from mer.training.trainer import Trainer, TrainingStopped

HAVE = {name: __import__("importlib").util.find_spec(module) is not None for name, (module, _) in REQUIREMENTS.items()}
needs = {name: pytest.mark.skipif(not HAVE[name], reason=f"{name} is not installed (pip install -e \".[{name}]\")")
         for name in REQUIREMENTS}


@pytest.fixture(autouse=True)
def _wandb_offline(monkeypatch, tmp_path):
    """W&B never reaches the network here: offline mode, no console capture, its settings kept in tmp_path."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_CONSOLE", "off")
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb-config"))
    monkeypatch.setenv("WANDB_CACHE_DIR", str(tmp_path / "wandb-cache"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


def _config(small_bible, runs_dir: Path, logger: LoggerConfig, **overrides) -> RunConfig:
    return tiny_run_config(small_bible[0], runs_dir, logger=logger, **overrides)


def _train(cfg: RunConfig, name: str = "run") -> dict:
    resolved = json.loads(json.dumps(dataclasses.asdict(cfg), default=str))
    return run_training(cfg, name, resolved)


def _records(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def _expected_points(run_dir: Path) -> dict[str, dict[int, float]]:
    """metric name -> {step: value}, from metrics.jsonl: what every tracker must hold, once each."""
    points: dict[str, dict[int, float]] = {}
    for record in _records(run_dir):
        for name, value in record_metrics(record).items():
            assert record["step"] not in points.setdefault(name, {}), (name, record["step"])
            points[name][record["step"]] = value
    return points


def _same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9)


# ---------------------------------------------------------------- readers (each library's own)
def tensorboard_points(log_dir: Path) -> tuple[dict[str, list[tuple[int, float]]], dict[str, list[str]]]:
    """(scalar tag -> [(step, value)] as TensorBoard shows them, text tag -> [texts])."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(log_dir), size_guidance={"scalars": 0, "tensors": 0})
    accumulator.Reload()
    scalars = {tag: [(e.step, e.value) for e in accumulator.Scalars(tag)] for tag in accumulator.Tags()["scalars"]}
    texts = {tag: [b"".join(e.tensor_proto.string_val).decode() for e in accumulator.Tensors(tag)]
             for tag in accumulator.Tags()["tensors"] if tag.endswith(("config/text_summary", "status/text_summary"))}
    return scalars, texts


def _tensorboard_hparams(log_dir: Path) -> set[str]:
    """The HParams plugin's summaries (the config, for the HParams tab) as TensorBoard's reader finds them."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(log_dir))
    accumulator.Reload()
    return set(accumulator.PluginTagToContent("hparams"))


def mlflow_run(uri: str, run_id: str):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    return client, client.get_run(run_id)


def mlflow_points(client, run_id: str, names) -> dict[str, list[tuple[int, float]]]:
    return {name: [(m.step, m.value) for m in client.get_metric_history(run_id, name)] for name in names}


def wandb_files(run_dir: Path) -> list[Path]:
    return sorted(run_dir.glob("wandb/offline-run-*/run-*.wandb"))


def wandb_history(run_dir: Path) -> tuple[dict[str, list[tuple[int, float]]], dict, dict, list[int]]:
    """(metric -> [(step, value)] over all the run's offline files, the last summary, the config, exit codes)."""
    from wandb_offline import records

    points: dict[str, list[tuple[int, float]]] = {}
    summary: dict = {}
    config: dict = {}
    exits = []
    for path in wandb_files(run_dir):
        for record in records(path):
            kind = record.WhichOneof("record_type")
            if kind == "history":
                step = record.history.step.num
                for item in record.history.item:
                    key = item.key or "/".join(item.nested_key)
                    if not key.startswith("_"):
                        points.setdefault(key, []).append((step, json.loads(item.value_json)))
            elif kind == "summary":
                for item in record.summary.update:
                    summary[item.key or "/".join(item.nested_key)] = json.loads(item.value_json)
            elif kind == "config":
                for item in record.config.update:
                    config[item.key or "/".join(item.nested_key)] = json.loads(item.value_json)
            elif kind == "run":
                for item in record.run.config.update:
                    config[item.key or "/".join(item.nested_key)] = json.loads(item.value_json)
            elif kind == "exit":
                exits.append(record.exit.exit_code)
    return points, summary, config, exits


def _assert_points_match(found: dict[str, list[tuple[int, float]]], expected: dict[str, dict[int, float]], who: str):
    for name, by_step in expected.items():
        got = found.get(name, [])
        steps = [s for s, _ in got]
        duplicated = [s for s, n in Counter(steps).items() if n > 1]
        assert not duplicated, f"{who}: {name} has duplicate points at steps {duplicated}"
        assert sorted(steps) == sorted(by_step), f"{who}: {name} steps {sorted(steps)} != {sorted(by_step)}"
        for step, value in got:
            assert _same(float(value), by_step[step]), (who, name, step, value, by_step[step])


def _two_tasks(small_bible, runs_dir: Path, logger: LoggerConfig, **overrides) -> RunConfig:
    """The tiny config cut to two tasks (every tracker run here is seconds of training)."""
    cfg = _config(small_bible, runs_dir, logger, **overrides)
    return dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, tasks=cfg.data.tasks[:2]))


def _state(run_dir: Path) -> dict:
    return json.loads((run_dir / "trackers.json").read_text())


ALL_THREE = {"tensorboard": TensorBoardConfig(), "mlflow": MlflowConfig(), "wandb": WandbConfig(mode="offline")}


@needs["tensorboard"]
@needs["mlflow"]
@needs["wandb"]
@pytest.mark.slow
def test_every_record_the_config_the_summary_and_the_status_reach_all_three(small_bible, tmp_path):
    cfg = _two_tasks(small_bible, tmp_path / "runs", LoggerConfig(**ALL_THREE))
    summary = _train(cfg)
    run = tmp_path / "runs" / "run"
    expected = _expected_points(run)
    assert {"train/loss", "train/lr", "train/tokens_per_s", "train/mfu", "eval/val_loss/en", "eval/val_loss/fr",
            "eval/boundary", "eval/flops_train"} <= set(expected)
    flat = flatten_config(json.loads((run / "config.json").read_text()))
    state = _state(run)
    assert {name: state[name]["sent"] for name in ("tensorboard", "mlflow", "wandb")} == dict.fromkeys(
        ("tensorboard", "mlflow", "wandb"), len(_records(run)))

    # TensorBoard, read with its own EventAccumulator.
    scalars, texts = tensorboard_points(run / "tensorboard")
    _assert_points_match(scalars, expected, "tensorboard")
    assert scalars["summary/retained_loss"] == [(summary["totals"]["steps"], pytest.approx(
        summary["metrics"]["retained_loss"]))]
    assert texts["status/text_summary"] == ["running", "completed"]
    assert f"| model.d_model | {cfg.model.d_model} |" in texts["config/text_summary"][0]
    assert _tensorboard_hparams(run / "tensorboard") == {"_hparams_/experiment", "_hparams_/session_start_info"}

    # MLflow (the default store: SQLite beside the runs), read with MlflowClient.
    assert state["mlflow"]["tracking_uri"] == f"sqlite:///{(tmp_path / 'runs' / 'mlflow.db').resolve()}"
    client, mlflow = mlflow_run(state["mlflow"]["tracking_uri"], state["mlflow"]["run_id"])
    _assert_points_match(mlflow_points(client, mlflow.info.run_id, expected), expected, "mlflow")
    assert mlflow.info.status == "FINISHED" and mlflow.data.tags["mer.status"] == "completed"
    assert mlflow.info.run_name == "run" and client.get_experiment(mlflow.info.experiment_id).name == "runs"
    assert mlflow.data.params["model.d_model"] == str(cfg.model.d_model) and mlflow.data.params["alpha"] == "0.25"
    assert len(mlflow.data.params) == len(flat)
    assert mlflow.data.metrics["summary/forgetting"] == pytest.approx(summary["metrics"]["forgetting"])
    assert mlflow.data.metrics["summary/totals/flops_train"] == summary["totals"]["flops_train"]

    # W&B offline, read from its run file with wandb's own protobuf records.
    [wandb_file] = wandb_files(run)
    assert wandb_file.name == f"run-{state['wandb']['id']}.wandb"
    history, wandb_summary, config, exits = wandb_history(run)
    _assert_points_match(history, expected, "wandb")
    assert wandb_summary["status"] == "completed" and exits == [0]
    assert wandb_summary["summary/learned_loss"] == pytest.approx(summary["metrics"]["learned_loss"])
    assert config["model.d_model"] == cfg.model.d_model and config["data.budget_tokens"] == cfg.data.budget_tokens


@needs["mlflow"]
@pytest.mark.slow
def test_mlflow_file_store(small_bible, tmp_path):
    """A file store asked for by URI works (MLflow 3 otherwise refuses it: maintenance mode)."""
    uri = f"file:{tmp_path / 'mlruns'}"
    cfg = _two_tasks(small_bible, tmp_path / "runs", LoggerConfig(mlflow=MlflowConfig(tracking_uri=uri,
                                                                                     experiment="bible")))
    _train(cfg)
    run = tmp_path / "runs" / "run"
    state = _state(run)
    assert state["mlflow"]["tracking_uri"] == uri and (tmp_path / "mlruns").is_dir()
    client, mlflow = mlflow_run(uri, state["mlflow"]["run_id"])
    expected = _expected_points(run)
    _assert_points_match(mlflow_points(client, mlflow.info.run_id, expected), expected, "mlflow file store")
    assert mlflow.info.status == "FINISHED" and client.get_experiment(mlflow.info.experiment_id).name == "bible"


@needs["tensorboard"]
@needs["mlflow"]
@needs["wandb"]
@pytest.mark.slow
def test_a_resumed_run_continues_the_same_tracker_runs_without_duplicate_points(small_bible, tmp_path, monkeypatch):
    """Three launches of one run: a crash at step 7 (checkpoint at 5: the records of step 6 reached the trackers and
    are cut from metrics.jsonl), a SIGTERM stop at step 13 (the trainer checkpoints and exits), then to the end.
    W&B joins at the second launch: it is sent the earlier records first."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    two = LoggerConfig(tensorboard=TensorBoardConfig(), mlflow=MlflowConfig(tracking_uri=uri))
    cfg = _two_tasks(small_bible, tmp_path / "runs", two, log_every=1)  # a train record at every step
    run = tmp_path / "runs" / "run"
    original = Trainer.train_step
    stop = {}

    def train_step(self, task):
        out = original(self, task)
        if self.position.step + 1 == stop.get("crash"):
            raise RuntimeError("simulated crash")  # after the step-6 records, before any checkpoint past 5
        if self.position.step + 1 == stop.get("sigterm"):
            self._stop_signal = signal.SIGTERM  # what the trainer's SIGTERM handler does
        return out

    monkeypatch.setattr(Trainer, "train_step", train_step)
    stop.update(crash=7)
    with pytest.raises(RuntimeError, match="simulated crash"):
        _train(cfg)
    first = _state(run)
    steps_sent = [r["step"] for r in _records(run)]
    assert max(steps_sent) == 6 and first["mlflow"]["sent"] == len(steps_sent)  # step 6 reached the trackers
    client, mlflow = mlflow_run(uri, first["mlflow"]["run_id"])
    assert mlflow.info.status == "FAILED" and mlflow.data.tags["mer.status"] == "failed"
    assert "wandb" not in first and not wandb_files(run)

    cfg = dataclasses.replace(cfg, logger=dataclasses.replace(two, wandb=WandbConfig(mode="offline")))
    stop.clear()
    stop.update(sigterm=13)
    with pytest.raises(TrainingStopped, match="signal"):
        _train(cfg)
    second = _state(run)
    assert second["mlflow"]["run_id"] == first["mlflow"]["run_id"]
    client, mlflow = mlflow_run(uri, first["mlflow"]["run_id"])
    assert mlflow.info.status == "KILLED" and mlflow.data.tags["mer.status"] == "stopped"
    assert wandb_history(run)[1]["status"] == "stopped"
    assert tensorboard_points(run / "tensorboard")[1]["status/text_summary"][-1].startswith("stopped")

    stop.clear()
    summary = _train(cfg)
    assert summary["status"] == "completed"
    third = _state(run)
    assert third["mlflow"]["run_id"] == first["mlflow"]["run_id"] and third["wandb"]["id"] == second["wandb"]["id"]
    expected = _expected_points(run)  # metrics.jsonl after the three launches: every step once
    assert third["tensorboard"]["sent"] == third["mlflow"]["sent"] == third["wandb"]["sent"] == len(_records(run))

    scalars, texts = tensorboard_points(run / "tensorboard")
    _assert_points_match(scalars, expected, "tensorboard")  # purge_step dropped the first step 6
    assert texts["status/text_summary"][-1] == "completed"
    client, mlflow = mlflow_run(uri, first["mlflow"]["run_id"])
    assert len(client.search_runs([mlflow.info.experiment_id])) == 1 and mlflow.info.status == "FINISHED"
    found = mlflow_points(client, mlflow.info.run_id, expected)
    # Losses of a resumed run are bit-identical; timings differ, and the trackers that cannot drop points keep the
    # first values they were sent for the records between the checkpoint and the crash (step 6).
    for name in ("train/tokens_per_s", "train/wall_time", "train/data_wait_s", "train/mfu", "eval/wall_time"):
        expected.pop(name, None)
    _assert_points_match(found, expected, "mlflow")
    history, wandb_summary, _, exits = wandb_history(run)
    assert len(wandb_files(run)) == 2 and exits == [1, 0] and wandb_summary["status"] == "completed"
    _assert_points_match(history, expected, "wandb")


def test_a_tracker_whose_library_is_missing_is_refused_with_the_pip_command(monkeypatch, small_bible, tmp_path):
    monkeypatch.setitem(REQUIREMENTS, "wandb", ("mer_no_such_module", "wandb>=0.31,<1"))
    monkeypatch.setitem(REQUIREMENTS, "mlflow", ("mer_no_such_module_either", "mlflow>=3.17,<4"))
    with pytest.raises(ValueError) as refused:
        _config(small_bible, tmp_path, LoggerConfig(wandb=WandbConfig(), mlflow=MlflowConfig()))
    message = str(refused.value)
    assert 'pip install "mlflow>=3.17,<4" "wandb>=0.31,<1"' in message and '".[mlflow,wandb]"' in message
    assert not (tmp_path / "run").exists()
    with pytest.raises(ValueError, match="logger.wandb.mode='disabled'"):
        WandbConfig(mode="disabled")


def test_the_logger_list_composes_and_does_not_change_the_run_name():
    from hydra import compose, initialize_config_module

    from mer.config.run_config import register_configs, to_dataclass
    from mer.rundir.layout import run_name_from_overrides

    register_configs()
    overrides = ["logger=[tensorboard,mlflow]", "logger.mlflow.tracking_uri=sqlite:///x.db", "alpha=0.5"]
    with initialize_config_module("mer.conf", version_base="1.3"):
        default = compose("config")
        picked = compose("config", overrides=overrides)
        wandb_only = compose("config", overrides=["logger=wandb"])
    assert default.logger == {"tensorboard": None, "mlflow": None, "wandb": None}
    assert picked.logger.tensorboard == {"log_dir": None} and picked.logger.wandb is None
    assert picked.logger.mlflow == {"tracking_uri": "sqlite:///x.db", "experiment": None}
    assert wandb_only.logger.wandb.mode is None and wandb_only.logger.mlflow is None
    if all(HAVE[name] for name in ("tensorboard", "mlflow")):
        assert to_dataclass(picked, RunConfig).logger.selected == ["tensorboard", "mlflow"]
    assert run_name_from_overrides(overrides) == "alpha=0.5"  # trackers do not change what is computed
    # The node is null until the tracker is picked: its settings alone cannot apply (OmegaConf's own error).
    with initialize_config_module("mer.conf", version_base="1.3"), pytest.raises(AssertionError, match="NoneType"):
        compose("config", overrides=["logger.mlflow.tracking_uri=sqlite:///x.db"])


class _Collecting(Tracker):
    """A tracker that keeps what it is sent, or raises at its `fail_at`-th record: the dispatcher is under test."""

    def __init__(self, name: str, fail_at: int | None = None) -> None:
        self.name, self.fail_at, self.points = name, fail_at, []

    def open(self, saved, config):
        return int((saved or {}).get("sent", 0))

    def log(self, step, metrics):
        if self.fail_at is not None and len(self.points) + 1 == self.fail_at:
            raise ConnectionError("server gone")
        self.points.append((step, metrics))

    def flush(self):
        pass

    def finish(self, status, summary, step, error):
        self.points.append(("finish", status))

    def state(self):
        return {}


def test_a_failing_tracker_is_dropped_and_the_others_get_everything(tmp_path, caplog):
    from mer.rundir.layout import MetricsLog
    from mer.trackers.dispatch import Trackers

    log = MetricsLog(tmp_path / "metrics.jsonl")
    log.append({"event": "eval", "step": 0, "val_loss": {"en": 5.0}})  # written before the trackers opened
    good, bad = _Collecting("good"), _Collecting("bad", fail_at=2)
    trackers = Trackers([good, bad], tmp_path, {"alpha": 0.25})
    log.on_append = trackers.record
    for step in (1, 2, 3):
        log.append({"event": "train", "step": step, "loss": 1.0 / step, "task": "en"})
    trackers.close({"status": "completed", "error": None, "totals": {"steps": 3}})
    assert [p[0] for p in good.points] == [0, 1, 2, 3, "finish"]
    assert good.points[0][1] == {"eval/val_loss/en": 5.0} and good.points[2][1] == {"train/loss": 0.5}
    assert good.points[-1] == ("finish", "completed") and [p[0] for p in bad.points] == [0]
    # `bad` took record 0 but failed before a flush confirmed it: a relaunch sends it records 0-3 (issue 23, item 2)
    assert _state(tmp_path) == {"good": {"sent": 4}, "bad": {"sent": 0}}
    assert "tracker bad failed (ConnectionError: server gone)" in caplog.text


@needs["mlflow"]
def test_an_unusable_tracking_uri_stops_the_run_before_training(tmp_path):
    from mer.trackers.dispatch import open_trackers

    run_dir = tmp_path / "runs" / "run"
    run_dir.mkdir(parents=True)
    with pytest.raises(Exception, match="nosuchscheme"):
        open_trackers(LoggerConfig(mlflow=MlflowConfig(tracking_uri="nosuchscheme://x")), run_dir, "run",
                      tmp_path / "runs", {"alpha": 0.25})


TINY = ["model=cpu-0.5m", "model.seq_len=32", "optim.batch_size=8", "data.budget_tokens=1024", "data.eval_tokens=65",
        "eval.every=1000", "data.tokenizer.vocab_size=512", "data.tokenizer.train_chars_per_task=40000",
        "data.tasks=[{name:en,max_train_documents:30},{name:fr,max_train_documents:30}]"]


@pytest.mark.slow
@needs["tensorboard"]
@needs["mlflow"]
@needs["wandb"]
def test_the_readme_command_in_a_sweep(tmp_path):
    """`python -m mer.run -m ... logger=[tensorboard,mlflow,wandb]` on the command line: every point gets its own
    TensorBoard folder, MLflow run (one experiment, one SQLite file) and W&B run, all complete."""
    args = [sys.executable, "-m", "mer.run", "-m", "seed=0,1", "logger=[tensorboard,mlflow,wandb]",
            "logger.wandb.mode=offline", f"runs_dir={tmp_path}/runs", f"data.data_dir={tmp_path}/data", *TINY]
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "WANDB_CONSOLE": "off",
           "WANDB_CONFIG_DIR": str(tmp_path / "wandb-config")}
    env.pop("MLFLOW_TRACKING_URI", None)
    done = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1200, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    runs = sorted(p.parent for p in (tmp_path / "runs").glob("*/summary.json"))
    run_ids = set()
    for run in runs:
        assert "logger" not in run.name  # trackers do not name the run
        expected = _expected_points(run)
        state = _state(run)
        _assert_points_match(tensorboard_points(run / "tensorboard")[0], expected, f"tensorboard {run.name}")
        client, mlflow = mlflow_run(state["mlflow"]["tracking_uri"], state["mlflow"]["run_id"])
        assert mlflow.info.status == "FINISHED" and mlflow.info.run_name == run.name
        _assert_points_match(mlflow_points(client, mlflow.info.run_id, expected), expected, f"mlflow {run.name}")
        history, summary, _, exits = wandb_history(run)
        assert summary["status"] == "completed" and exits == [0]
        _assert_points_match(history, expected, f"wandb {run.name}")
        run_ids.add(state["mlflow"]["run_id"])
    assert len(runs) == 2 and len(run_ids) == 2
    assert state["mlflow"]["tracking_uri"] == f"sqlite:///{(tmp_path / 'runs' / 'mlflow.db').resolve()}"


@pytest.mark.slow
@needs["tensorboard"]
@needs["mlflow"]
@needs["wandb"]
def test_sigterm_on_the_command_line_then_the_same_command_continues_the_tracker_runs(tmp_path):
    """A real SIGTERM to `python -m mer.run ... logger=[...]`: the trainer checkpoints and exits 143, the trackers
    say stopped; the same command again finishes the same MLflow and W&B runs, with every step once."""
    import time

    tiny = [a for a in TINY if not a.startswith("data.budget_tokens")] + ["data.budget_tokens=8000", "log_every=2"]
    args = [sys.executable, "-m", "mer.run", "logger=[tensorboard,mlflow,wandb]", "logger.wandb.mode=offline",
            f"runs_dir={tmp_path}/runs", f"data.data_dir={tmp_path}/data", "checkpoint_every=1000", *tiny]
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "WANDB_CONSOLE": "off",
           "WANDB_CONFIG_DIR": str(tmp_path / "wandb-config")}
    env.pop("MLFLOW_TRACKING_URI", None)
    proc = subprocess.Popen(args, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline, found = time.time() + 900, []
    while time.time() < deadline and not found and proc.poll() is None:
        found = [m for m in (tmp_path / "runs").glob("*/metrics.jsonl") if m.read_text().count('"train"') >= 2]
        time.sleep(0.2)
    assert found, "the run never logged two train lines"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 143, err[-3000:]
    run = found[0].parent
    first = _state(run)
    client, mlflow = mlflow_run(first["mlflow"]["tracking_uri"], first["mlflow"]["run_id"])
    assert mlflow.info.status == "KILLED" and wandb_history(run)[1]["status"] == "stopped"
    assert first["mlflow"]["sent"] == len(_records(run))  # flushed at the stop
    again = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1200, check=False)
    assert again.returncode == 0, again.stderr[-3000:]
    second = _state(run)
    assert second["mlflow"]["run_id"] == first["mlflow"]["run_id"] and second["wandb"]["id"] == first["wandb"]["id"]
    expected = _expected_points(run)
    _assert_points_match(tensorboard_points(run / "tensorboard")[0], expected, "tensorboard")
    client, mlflow = mlflow_run(second["mlflow"]["tracking_uri"], second["mlflow"]["run_id"])
    assert mlflow.info.status == "FINISHED"
    _assert_points_match(mlflow_points(client, mlflow.info.run_id, expected), expected, "mlflow")
    history, summary, _, exits = wandb_history(run)
    assert exits == [1, 0] and summary["status"] == "completed"
    _assert_points_match(history, expected, "wandb")


def test_the_refusal_names_the_ranges_of_the_optional_extras():
    """pyproject.toml's extras and the pip command of the refusal give the same requirement for each tracker."""
    import tomllib

    extras = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]
    assert {name: extras[name] for name in REQUIREMENTS} == {name: [req] for name, (_, req) in REQUIREMENTS.items()}
    assert extras["trackers"] == ["mer[tensorboard,mlflow,wandb]"]
