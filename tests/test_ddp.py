"""Data parallelism on CPU (gloo, 2 processes through torchrun): DDP and FSDP (`fsdp_on_cpu=true`),
and the device checks of the fast path.

The multi-process tests launch this very file under torchrun (`python -m torch.distributed.run
--standalone --nproc_per_node 2 tests/test_ddp.py SPEC`): its `__main__` block builds the tiny run
config of conftest.py and calls `mer.launch.runner.run_training` on every rank.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from mer_testing import small_bible_config, tiny_run_config

HERE = Path(__file__).resolve()
# Small but not trivial: alpha=0.25 puts rank 1's rows across the new/replay boundary (rows 4-5 new,
# 6-7 replayed), grad_accum=2 exercises DDP's no_sync, Reptile every 3 steps, an eval every 2 steps.
SPEC = {"alpha": 0.25, "k": 3, "eps": 0.5, "batch_size": 8, "grad_accum": 2, "budget_tokens": 512, "eval_every": 2}
# One eval batch: under FSDP rank 1 must still join rank 0's forward (an uncounted one of its own).
# Activation checkpointing on too, as the big sizes use it (recomputed blocks re-gather their weights).
FSDP = {"parallel": "fsdp", "fsdp_on_cpu": True, "eval_batch_size": 4, "activation_checkpointing": True}
TIMING = ("wall_time", "tokens_per_s", "data_wait_s", "mfu")


def _config(data_dir: str | Path, runs_dir: str | Path, **spec):
    """The RunConfig of a SPEC-like dict (shared by the test process and the torchrun workers)."""
    from mer.config.run_config import EvalConfig
    from mer.optim.schedule import OptimConfig

    spec = dict(spec)
    optim = OptimConfig(lr=3e-3, min_lr=3e-4, batch_size=spec.pop("batch_size"), grad_accum=spec.pop("grad_accum"))
    # 4 evaluation windows (129 held-out tokens, 32-token context): batches of 3 and 1 (one per rank), or one
    # batch of 4 (rank 1 has none).
    evaluation = EvalConfig(every=spec.pop("eval_every"), batch_size=spec.pop("eval_batch_size", 3),
                            grad_alignment=spec.pop("grad_alignment", False))
    return tiny_run_config(small_bible_config(Path(data_dir)), Path(runs_dir), optim=optim, eval=evaluation, **spec)


def _resolved(cfg) -> dict:
    return json.loads(json.dumps(dataclasses.asdict(cfg), default=str))


def _flat(matrix: list[list[float]]) -> list[float]:
    return [v for row in matrix for v in row]


def _records(run_dir: Path, event: str | None = None) -> list[dict]:
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k not in TIMING} for r in records if event is None or r["event"] == event]


def _torchrun(data_dir: Path, runs_dir: Path, nproc: int = 2, stop_after: int | None = None, **spec):
    """Run the worker below on `nproc` CPU processes; returns the CompletedProcess."""
    payload = json.dumps({"data_dir": str(data_dir), "runs_dir": str(runs_dir), "stop_after": stop_after,
                          "spec": {**SPEC, **spec}})
    env = {k: v for k, v in os.environ.items()
           if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT") and not k.startswith("SLURM_")}
    env["OMP_NUM_THREADS"] = "1"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
               str(HERE), payload]
    return subprocess.run(command, env=env, cwd=HERE.parent, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def two_process_run(small_bible, tmp_path_factory):
    """An uninterrupted 2-process DDP run of SPEC: (run directory, summary)."""
    runs = tmp_path_factory.mktemp("ddp2")
    result = _torchrun(Path(small_bible[0].data_dir), runs)
    assert result.returncode == 0, result.stderr[-4000:]
    return runs / "run", json.loads((runs / "run" / "summary.json").read_text())


@pytest.fixture(scope="module")
def two_process_fsdp_run(small_bible, tmp_path_factory):
    """An uninterrupted 2-process FSDP run of SPEC: (run directory, summary)."""
    runs = tmp_path_factory.mktemp("fsdp2")
    result = _torchrun(Path(small_bible[0].data_dir), runs, **FSDP)
    assert result.returncode == 0, result.stderr[-4000:]
    return runs / "run", json.loads((runs / "run" / "summary.json").read_text())


@pytest.fixture(scope="module")
def one_process_run(small_bible, tmp_path_factory):
    """The same run of SPEC in this process: (run directory, summary)."""
    from mer.launch.runner import run_training

    runs = tmp_path_factory.mktemp("one")
    cfg = _config(small_bible[0].data_dir, runs, **SPEC)
    return runs / "run", run_training(cfg, "run", _resolved(cfg))


def _assert_same_training(one: tuple[Path, dict], two: tuple[Path, dict]) -> None:
    """Two runs of SPEC trained the same rows to the same losses (up to float summation order)."""
    (one_dir, one_summary), (two_dir, two_summary) = one, two
    assert two_summary["status"] == "completed" and two_summary["world_size"] == 2 and one_summary["world_size"] == 1
    # Same rows trained, the same FLOPs counted: the global batch is the same.
    assert two_summary["totals"] == one_summary["totals"]
    evals_one, evals_two = _records(one_dir, "eval"), _records(two_dir, "eval")
    assert len(evals_one) == len(evals_two) > 10
    for a, b in zip(evals_one, evals_two):
        assert a["step"] == b["step"] and a["boundary"] == b["boundary"]
        assert b["val_loss"] == pytest.approx(a["val_loss"], rel=1e-4)
    train_one, train_two = _records(one_dir, "train"), _records(two_dir, "train")
    assert [r["loss"] for r in train_two] == pytest.approx([r["loss"] for r in train_one], rel=1e-4)
    assert _flat(two_summary["loss_matrix"]) == pytest.approx(_flat(one_summary["loss_matrix"]), rel=1e-4)
    # Only rank 0 wrote the run's files: one metrics file, one state.pt, no files of rank 1.
    assert not any("rank1" in p.name for p in two_dir.rglob("*"))


# ---------------------------------------------------------------------------------- multi-process


@pytest.mark.slow
def test_two_processes_of_half_the_batch_follow_one_process(one_process_run, two_process_run):
    _assert_same_training(one_process_run, two_process_run)
    assert not (two_process_run[0] / "checkpoint" / "sharded").exists()


@pytest.mark.slow
def test_two_fsdp_processes_follow_one_process(one_process_run, two_process_fsdp_run):
    import torch

    _assert_same_training(one_process_run, two_process_fsdp_run)
    checkpoint = two_process_fsdp_run[0] / "checkpoint"
    # Each rank wrote its own shard file; state.pt holds no weights, optimizer state or anchor.
    assert sorted(p.name for p in (checkpoint / "sharded").iterdir()) == [".metadata", "__0_0.distcp", "__1_0.distcp"]
    state = torch.load(checkpoint / "state.pt", weights_only=True)
    assert state["sharded"] and "model" not in state and "optimizer" not in state
    assert state["reptile"]["anchor"] is None and state["reptile"]["n_steps"] > 0
    # Every weight and AdamW moment was written as two halves (one per rank), and every anchor tensor as
    # one rank's half: no rank held a whole tensor of any of them.
    from torch.distributed.checkpoint import FileSystemReader

    entries = FileSystemReader(checkpoint / "sharded").read_metadata().state_dict_metadata
    weights = {k: v for k, v in entries.items() if k.startswith("model.")}
    moments = {k: v for k, v in entries.items() if k.endswith((".exp_avg", ".exp_avg_sq"))}
    anchors = {k: v for k, v in entries.items() if k.startswith("reptile_anchor.")}
    assert len(weights) == len(anchors) / 2 == len(moments) / 2 > 30
    for entry in [*weights.values(), *moments.values()]:
        assert [c.sizes[0] for c in entry.chunks] == [entry.size[0] // 2] * 2 and len(entry.size) <= 2
    for i, entry in enumerate(weights.values()):  # the anchor halves of parameter i, rank 0 then rank 1
        halves = [anchors[f"reptile_anchor.rank{r}.{i}"].size for r in (0, 1)]
        assert halves[0][0] + halves[1][0] == entry.size[0] and halves[0][1:] == entry.size[1:]


@pytest.mark.slow
def test_interrupted_two_process_run_resumes_to_the_same_losses(small_bible, tmp_path, two_process_run):
    import torch

    from mer.launch.runner import RunConfigMismatch, run_training

    data_dir = Path(small_bible[0].data_dir)
    # Only rank 1 "receives" the signal after its 7th step: the ranks must agree to stop after the same step.
    stopped = _torchrun(data_dir, tmp_path, stop_after=7)
    assert stopped.returncode != 0
    output = stopped.stderr + stopped.stdout
    assert "stopped by signal on another rank at step 7" in output, output[-4000:]
    run_dir = tmp_path / "run"
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "stopped" and "signal" in summary["error"]
    state = torch.load(run_dir / "checkpoint" / "state.pt", weights_only=True)
    assert state["position"]["step"] == 7 and state["world_size"] == 2

    # A checkpoint of 2 processes is refused by 1 process, before any work, with the reason.
    shutil.copytree(tmp_path, tmp_path.parent / (tmp_path.name + "-copy"))
    cfg = _config(data_dir, tmp_path.parent / (tmp_path.name + "-copy"), **SPEC)
    with pytest.raises(RunConfigMismatch, match="checkpoint written by 2 processes, this job has 1"):
        run_training(cfg, "run", _resolved(cfg))

    resumed = _torchrun(data_dir, tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    reference_dir, reference = two_process_run
    assert _records(run_dir) == _records(reference_dir)  # bit-identical to the uninterrupted run
    assert json.loads((run_dir / "summary.json").read_text())["loss_matrix"] == reference["loss_matrix"]


@pytest.mark.slow
def test_interrupted_fsdp_run_resumes_to_the_same_losses(small_bible, tmp_path, two_process_fsdp_run):
    """Sharded checkpoint of 2 ranks (weights, Adam moments and Reptile anchor split in halves), resumed."""
    data_dir = Path(small_bible[0].data_dir)
    stopped = _torchrun(data_dir, tmp_path, stop_after=7, **FSDP)
    assert stopped.returncode != 0
    output = stopped.stderr + stopped.stdout
    assert "stopped by signal on another rank at step 7" in output, output[-4000:]
    # The same run directory under DDP is refused before any work: the checkpoint holds shards.
    refused = _torchrun(data_dir, tmp_path, eval_batch_size=4)
    assert refused.returncode != 0
    assert "written with parallel=fsdp, this job uses parallel=ddp; resume with parallel=fsdp" in refused.stderr
    resumed = _torchrun(data_dir, tmp_path, **FSDP)
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    run_dir, (reference_dir, reference) = tmp_path / "run", two_process_fsdp_run
    # Bit-identical to the uninterrupted run (a restart from step 0 would have logged steps 1-7 twice).
    assert _records(run_dir) == _records(reference_dir)
    assert json.loads((run_dir / "summary.json").read_text())["loss_matrix"] == reference["loss_matrix"]


@pytest.mark.slow
@pytest.mark.slow
def test_fsdp_exports_each_task_from_the_gathered_weights(small_bible, tmp_path):
    """export_each_task under FSDP: the ranks gather the whole weights onto rank 0, which writes models/after_<task>;
    the last one equals what `python -m mer.export` reads back from the sharded checkpoint (no process group)."""
    import torch
    from transformers import AutoModelForCausalLM

    from mer.hf.export import export_run

    result = _torchrun(Path(small_bible[0].data_dir), tmp_path, export_each_task=True, **FSDP)
    assert result.returncode == 0, result.stderr[-4000:]
    run_dir = tmp_path / "run"
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["sharded"] and summary["exported_models"] == {t: f"models/after_{t}" for t in summary["tasks"]}
    last = AutoModelForCausalLM.from_pretrained(str(run_dir / "models" / f"after_{summary['tasks'][-1]}"))
    final = AutoModelForCausalLM.from_pretrained(str(export_run(run_dir, tmp_path / "final")))
    for name, tensor in final.state_dict().items():
        assert torch.equal(last.state_dict()[name], tensor), name


def test_fsdp_on_cpu_is_refused_unless_asked_for(small_bible, tmp_path):
    result = _torchrun(Path(small_bible[0].data_dir), tmp_path, parallel="fsdp")
    assert result.returncode != 0
    assert "parallel=fsdp shards the model over GPUs, but this job runs on the CPU" in result.stderr
    assert "fsdp_on_cpu=true" in result.stderr
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_a_batch_that_does_not_split_over_the_processes_is_refused_before_training(small_bible, tmp_path):
    result = _torchrun(Path(small_bible[0].data_dir), tmp_path, batch_size=7, grad_accum=1)
    assert result.returncode != 0
    assert "optim.batch_size=7 does not split over 2 processes" in result.stderr
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_a_run_directory_owned_by_another_process_stops_every_rank(small_bible, tmp_path):
    """Rank 0 takes the run directory's lock (mer.rundir.lock); refused, it stops, and rank 1 with it (no hang)."""
    from test_run_dir_lock import hold_lock

    holder = hold_lock(tmp_path / "run")
    try:
        before = sorted(p.name for p in (tmp_path / "run").iterdir())
        result = _torchrun(Path(small_bible[0].data_dir), tmp_path)
        assert result.returncode != 0
        assert f"is in use by pid {holder.pid}" in result.stderr and "rank 0 failed" in result.stderr
        assert sorted(p.name for p in (tmp_path / "run").iterdir()) == before
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.slow
def test_sigterm_to_the_torchrun_group_checkpoints_and_the_same_command_resumes(tmp_path):
    """As Slurm or a user stops a job: SIGTERM to torchrun and its workers, then the same command again."""
    import signal
    import time

    tasks = "data.tasks=[{name:en,max_train_documents:60},{name:fr,max_train_documents:60}]"
    args = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "mer.run",
            tasks, "model=cpu-0.5m", "model.seq_len=32", "optim.batch_size=8", "data.budget_tokens=12000",
            "data.eval_tokens=65", "eval.every=1000", "data.tokenizer.vocab_size=512",
            "data.tokenizer.train_chars_per_task=40000", f"runs_dir={tmp_path}/runs", f"data.data_dir={tmp_path}/data",
            "run_name=sig", "log_every=1", "checkpoint_every=1000"]
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env["OMP_NUM_THREADS"] = "1"
    proc = subprocess.Popen(args, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    metrics = tmp_path / "runs" / "sig" / "metrics.jsonl"
    deadline = time.time() + 300
    while time.time() < deadline and (not metrics.exists() or metrics.read_text().count('"train"') < 3):
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode != 0
    summary = json.loads((tmp_path / "runs" / "sig" / "summary.json").read_text())
    assert summary["status"] == "stopped" and "stopped by signal 15" in summary["error"], err[-3000:]
    resumed = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed from checkpoint at step" in resumed.stdout + resumed.stderr
    steps = [json.loads(line)["step"] for line in metrics.read_text().splitlines() if '"train"' in line]
    assert steps == list(range(1, len(steps) + 1))  # continued where it stopped, every step logged once


def _runs_with_and_without(flag: str, small_bible, tmp_path: Path, budget_tokens: int) -> list[dict]:
    """Summaries of the tiny run with `flag` false, then true (run directories tmp_path/False|True/run)."""
    from mer.launch.runner import run_training

    summaries = []
    for value in (False, True):
        cfg = tiny_run_config(small_bible[0], tmp_path / str(value), budget_tokens=budget_tokens, **{flag: value})
        summaries.append(run_training(cfg, "run", _resolved(cfg)))
    return summaries


@pytest.mark.slow
def test_compile_gives_the_same_losses(small_bible, tmp_path):
    summaries = _runs_with_and_without("compile", small_bible, tmp_path, budget_tokens=256)
    assert _flat(summaries[1]["loss_matrix"]) == pytest.approx(_flat(summaries[0]["loss_matrix"]), rel=1e-4)


# ---------------------------------------------------------------------------------- one process


def test_batch_split_rule():
    from mer.config.run_config import RunConfig
    from mer.optim.schedule import OptimConfig
    from mer.training.trainer import check_world_size

    check_world_size(RunConfig(alpha=0.25, optim=OptimConfig(batch_size=8)), 2)  # 6 new + 2 replay: fine
    check_world_size(RunConfig(alpha=0.3, optim=OptimConfig(batch_size=8)), 8)  # any split: rows, not kinds
    with pytest.raises(ValueError, match=r"batch_size=6 does not split over 4 processes.*\[4, 8, 12, 16\]"):
        check_world_size(RunConfig(optim=OptimConfig(batch_size=6)), 4)
    with pytest.raises(ValueError, match="grad_accum=4 does not divide the 2 sequences each of the 4 processes"):
        check_world_size(RunConfig(optim=OptimConfig(batch_size=8, grad_accum=4)), 4)


def test_parallel_choice():
    import torch

    from mer.config.run_config import RunConfig
    from mer.parallel.sharding import check_parallel

    cpu, gpu = torch.device("cpu"), torch.device("cuda", 0)
    assert not check_parallel("fsdp", gpu, 1, False)  # one process: nothing to shard over
    assert check_parallel("fsdp", gpu, 8, False) and not check_parallel("ddp", gpu, 8, False)
    assert check_parallel("fsdp", cpu, 2, True)
    with pytest.raises(ValueError, match="runs on the CPU: use parallel=ddp"):
        check_parallel("fsdp", cpu, 2, False)
    with pytest.raises(ValueError, match=r"parallel='zero3': choose one of \['ddp', 'fsdp'\]"):
        RunConfig(parallel="zero3")


def test_launcher_variables():
    from mer.parallel.distributed import WorldInfo, world_from_env

    assert world_from_env({}) == WorldInfo()
    assert world_from_env({"SLURM_NTASKS": "1", "SLURM_PROCID": "0"}) == WorldInfo()  # a one-task Slurm job
    torchrun = {"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "SLURM_NTASKS": "1", "SLURM_PROCID": "0"}
    assert world_from_env(torchrun) == WorldInfo(3, 4, 1, "torchrun")  # torchrun inside a Slurm job wins
    slurm = {"SLURM_NTASKS": "8", "SLURM_PROCID": "5", "SLURM_LOCALID": "1", "MASTER_ADDR": "node1",
             "MASTER_PORT": "29500"}
    assert world_from_env(slurm) == WorldInfo(5, 8, 1, "slurm")
    with pytest.raises(RuntimeError, match="MASTER_ADDR/MASTER_PORT are not set.*srun"):
        world_from_env({"SLURM_NTASKS": "8", "SLURM_PROCID": "0"})
    with pytest.raises(RuntimeError, match="inconsistent"):
        world_from_env({"RANK": "4", "WORLD_SIZE": "4"})


def test_single_process_collectives_are_the_identity():
    import torch

    from mer.parallel.distributed import Distributed

    d = Distributed()
    x = torch.tensor([1.5, 2.0])
    assert d.mean(x) is x and d.sum(x) is x and d.any(True) and not d.any(False)
    assert d.main_first(lambda: 7) == 7 and d.is_main and not d.enabled
    d.barrier()


def test_gpu_device_choice_and_bf16_check_without_a_gpu(monkeypatch):
    """The CUDA branches, with torch.cuda's answers faked (no GPU here)."""
    import contextlib

    import torch

    from mer.compute.mfu import device_peak_flops
    from mer.parallel.distributed import check_precision, resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    assert resolve_device("auto", local_rank=3, world_size=8) == torch.device("cuda", 3)
    assert resolve_device("cuda", local_rank=5, world_size=8) == torch.device("cuda", 1)  # 2nd node of 4 GPUs
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)  # srun --gpus-per-task=1: one visible GPU each
    assert resolve_device("cuda", local_rank=3, world_size=4) == torch.device("cuda", 0)
    assert resolve_device("cuda:2") == torch.device("cuda", 2)
    with pytest.raises(ValueError, match="device='cuda:1' with 2 processes: use device=cuda"):
        resolve_device("cuda:1", local_rank=0, world_size=2)
    assert resolve_device("cpu", local_rank=1, world_size=2) == torch.device("cpu")

    monkeypatch.setattr(torch.cuda, "device", lambda d: contextlib.nullcontext())
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda d=None: "Tesla V100-SXM2-32GB")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: False)
    with pytest.raises(ValueError, match="Tesla V100-SXM2-32GB has no native bf16"):
        check_precision("bf16", torch.device("cuda", 0))
    check_precision("fp32", torch.device("cuda", 0))
    assert device_peak_flops(torch.device("cuda", 0), "fp32") == (15.7e12, "Tesla V100-SXM2-32GB fp32 data sheet")
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda d=None: "NVIDIA H100 80GB HBM3")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)
    check_precision("bf16", torch.device("cuda", 0))
    assert device_peak_flops(torch.device("cuda", 0), "bf16")[0] == 989e12
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda d=None: "NVIDIA B300")
    assert device_peak_flops(torch.device("cuda", 0), "bf16")[0] is None  # unknown: no MFU unless peak_flops


def test_bf16_on_cpu_is_refused_before_training(small_bible, tmp_path):
    from mer.launch.runner import run_training

    cfg = tiny_run_config(small_bible[0], tmp_path, precision="bf16")
    with pytest.raises(ValueError, match="precision=bf16 needs a CUDA GPU"):
        run_training(cfg, "run", _resolved(cfg))
    assert not (tmp_path / "run").exists()


def test_new_config_fields_are_checked():
    from mer.config.run_config import RunConfig

    with pytest.raises(ValueError, match="precision='fp16': choose fp32 or bf16"):
        RunConfig(precision="fp16")
    with pytest.raises(ValueError, match="peak_flops=0.0 must be > 0"):
        RunConfig(peak_flops=0.0)
    with pytest.raises(ValueError, match="compile='yes' must be true or false"):
        RunConfig(compile="yes")


def test_activation_checkpointing_gives_the_same_losses(small_bible, tmp_path):
    summaries = _runs_with_and_without("activation_checkpointing", small_bible, tmp_path, budget_tokens=512)
    assert _flat(summaries[1]["loss_matrix"]) == pytest.approx(_flat(summaries[0]["loss_matrix"]), rel=1e-5)
    train = [_records(tmp_path / str(flag) / "run", "train") for flag in (False, True)]
    assert all(isinstance(r["loss"], float) for r in train[0])
    assert [r["loss"] for r in train[1]] == pytest.approx([r["loss"] for r in train[0]], rel=1e-5)


def test_train_lines_carry_mfu(small_bible, tmp_path):
    from mer.launch.runner import run_training

    cfg = tiny_run_config(small_bible[0], tmp_path, budget_tokens=512, peak_flops=1e12)
    run_training(cfg, "run", _resolved(cfg))
    lines = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in lines if r["event"] == "train"]
    assert train and all(0 < r["mfu"] < 1 for r in train)  # a 0.5M model on 1 TFLOP/s: far from the peak
    assert all("mfu" not in r for r in lines if r["event"] == "eval")


# ---------------------------------------------------------------------------------- torchrun worker


def _worker(payload: dict) -> None:
    import signal

    import torch

    from mer.launch.runner import run_training
    from mer.training.trainer import Trainer, TrainingStopped

    torch.set_num_threads(1)
    cfg = _config(payload["data_dir"], payload["runs_dir"], **payload["spec"])
    stop_after = payload["stop_after"]
    if stop_after is not None and int(os.environ["RANK"]) == 1:
        original = Trainer.train_step

        def train_step(self, task):  # the signal handler's effect during step `stop_after`, on rank 1 only
            if self.position.step + 1 == stop_after:  # position.step is advanced after train_step returns
                self._stop_signal = signal.SIGTERM
            return original(self, task)

        Trainer.train_step = train_step
    try:
        run_training(cfg, "run", _resolved(cfg))
    except TrainingStopped as stop:
        print(f"rank {os.environ['RANK']}: {stop}", file=sys.stderr)
        sys.exit(143)


if __name__ == "__main__":
    _worker(json.loads(sys.argv[1]))
