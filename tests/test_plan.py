"""The plan (`plan=true`, mer/plan/) against what real runs record and measure, and the fit refusal (docs/plan.md)."""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from mer_testing import tiny_run_config

REPO = Path(__file__).resolve().parents[1]
PROBE = Path(__file__).resolve().parent / "plan_probe.py"
TIME_FACTOR = 3.0  # docs/plan.md: the estimated time of a CPU run is within this factor of its wall time
MEMORY_TOLERANCE = 0.2  # docs/plan.md: the CPU memory estimate is within 20% of the peak resident-set growth


def _run(args: list[str], cwd: Path, timeout: int = 900) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}  # this checkout's mer, from another directory
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


# ------------------------------------------------------------------------------------------- counts and FLOPs

@pytest.mark.parametrize("overrides", [
    dict(alpha=0.25, k=2, eval=None),
    dict(alpha=0.5, k=3, reptile_reset_each_task=False, reptile_at_task_end=True, buffer="no_current"),
    dict(alpha=0.0, k=0, eval=3),
], ids=["replay-reptile", "no-reset-task-end", "no-replay-eval-every-3"])
def test_plan_counts_and_flops_equal_what_a_run_records(small_bible, tmp_path, overrides):
    """Steps and Reptile interpolations per task, and every FLOP total, exactly as the trained run's summary.json."""
    from mer.config.run_config import EvalConfig
    from mer.launch.runner import run_training
    from mer.plan.estimate import build_plan
    from mer.replay.buffer import BufferConfig

    overrides = dict(overrides)
    every, buffer = overrides.pop("eval", None), overrides.pop("buffer", None)
    if every is not None:
        overrides["eval"] = EvalConfig(every=every, batch_size=4)
    if buffer == "no_current":
        overrides["buffer"] = BufferConfig(replay_current_task=False)
    cfg = tiny_run_config(small_bible[0], tmp_path / "runs", budget_tokens=1536, **overrides)
    plan = build_plan(cfg, "r", measure=False)
    assert plan.eval_known and plan.sizes.vocab_size == len(small_bible[1].tokenizer)
    summary = run_training(cfg, "r", dataclasses.asdict(cfg))
    assert {t.name: t.steps for t in plan.counts.tasks} == summary["steps_per_task"]
    assert {t.name: t.reptile_steps for t in plan.counts.tasks} == summary["reptile_steps_per_task"]
    assert (plan.n_params, plan.n_params_nonembedding) == (summary["n_params"], summary["n_params_nonembedding"])
    totals = summary["totals"]
    for kind in ("new", "replay", "reptile", "eval", "train"):
        assert plan.flops[kind] == totals[f"flops_{kind}"], kind
    assert plan.counts.rows_new * cfg.model.seq_len == totals["tokens_new"]
    assert plan.counts.rows_replay * cfg.model.seq_len == totals["tokens_replay"]
    records = [json.loads(line) for line in (tmp_path / "runs" / "r" / "metrics.jsonl").read_text().splitlines()]
    assert plan.counts.evaluations == sum(r["event"] == "eval" for r in records)


# ------------------------------------------------------------------------------------------- memory formula

@pytest.mark.parametrize("shape", [dict(n_layer=2, d_model=64, n_head=4, d_ff=160, seq_len=48),
                                   dict(n_layer=3, d_model=96, n_head=6, n_kv_head=2, d_ff=256, seq_len=32)],
                         ids=["mha", "gqa"])
def test_activation_formula_counts_what_autograd_saves(shape):
    """The floats per token of mer.plan.memory are the bytes autograd saves for the backward pass of a built model."""
    from mer.model.llama import ModelConfig, build_model
    from mer.plan.memory import activation_floats_per_token

    cfg, vocab, rows = ModelConfig(name="custom", **shape), 700, 3
    model = build_model(cfg, vocab)
    weights = {p.untyped_storage().data_ptr() for p in model.parameters()}
    saved: dict[int, int] = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in weights:
            saved[storage.data_ptr()] = storage.nbytes()
        return tensor

    tokens = torch.randint(0, vocab, (rows, cfg.seq_len + 1))
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        logits = model(input_ids=tokens[:, :-1]).logits
        F.cross_entropy(logits.float().flatten(0, 1), tokens[:, 1:].flatten())
    counted = sum(saved.values()) / 4 / (rows * cfg.seq_len)
    # Within 1%: RoPE's cos/sin tables ([T, head_dim], shared by the rows) and per-head scalars are left out.
    assert activation_floats_per_token(cfg, vocab) == pytest.approx(counted, rel=0.01)


def test_memory_modes_divide_the_state_and_name_the_anchor_place():
    from mer.model.llama import get_preset
    from mer.plan.memory import estimate_memory

    model = get_preset("1b")
    kwargs = dict(batch_size=16, grad_accum=1, eval_batch_size=8, eval_context=2048, precision="bf16",
                  activation_checkpointing=False, reptile_active=True, anchor_on_device=False, device_kind="cuda")
    single = estimate_memory(model, 50304, 1_000_562_176, 820_334_592, **kwargs)
    ddp = estimate_memory(model, 50304, 1_000_562_176, 820_334_592, mode="ddp", world_size=8, **kwargs)
    fsdp = estimate_memory(model, 50304, 1_000_562_176, 820_334_592, mode="fsdp", world_size=8, **kwargs)
    assert single.adamw == 8 * 1_000_562_176 and ddp.adamw == single.adamw and fsdp.adamw == single.adamw // 8
    assert ddp.activations < single.activations  # 2 rows per GPU instead of 16
    assert single.host_anchor == 4 * 1_000_562_176 and single.reptile_anchor not in (0, single.device_total)
    assert fsdp.device_total < ddp.device_total


# ------------------------------------------------------------------------------------------- fit refusal

def test_gpu_presets_are_refused_on_a_cpu_with_the_estimate_and_the_override(tmp_path):
    from mer.config.run_config import RunConfig
    from mer.model.llama import get_preset
    from mer.plan.fit import fit_refusal

    cfg = RunConfig(model=get_preset("560m"), device="cpu", runs_dir=str(tmp_path))
    refusal = fit_refusal(cfg, "r")
    assert refusal is not None and "model=560m needs an estimated" in refusal and "GiB" in refusal
    assert "allow_oversize=true" in refusal
    assert fit_refusal(dataclasses.replace(cfg, allow_oversize=True), "r") is None


def test_a_run_longer_than_max_hours_is_refused_and_max_hours_null_lifts_it(small_bible, tmp_path):
    from mer.plan.fit import fit_refusal

    cfg = tiny_run_config(small_bible[0], tmp_path, max_hours=1e-9)
    refusal = fit_refusal(cfg, "r")
    assert refusal is not None and "more than max_hours=1e-09" in refusal and "max_hours=null" in refusal
    assert fit_refusal(dataclasses.replace(cfg, max_hours=None), "r") is None


@pytest.mark.parametrize("preset", ["cpu-0.3m", "cpu-0.5m", "cpu-1m", "cpu-2m", "cpu-3m", "cpu-8m", "cpu-30m"])
def test_cpu_presets_fit_a_cpu_on_the_default_budget(tmp_path, preset):
    """Memory: the estimate fits this machine; time: even at the machine's matmul rate it is under max_hours
    (the measured rate, which depends on the load of the machine, decides in the end)."""
    from mer.config.run_config import RunConfig
    from mer.model.llama import get_preset
    from mer.plan.estimate import build_plan
    from mer.plan.fit import memory_refusal

    cfg = RunConfig(model=get_preset(preset), device="cpu", runs_dir=str(tmp_path))
    plan = build_plan(cfg, "r", measure=False)
    assert memory_refusal(cfg, plan) is None
    assert plan.hours < cfg.max_hours


def test_plan_settings_are_checked():
    from mer.config.run_config import RunConfig

    for bad, message in ((dict(plan_mfu=0), "plan_mfu=0"), (dict(max_hours=0), "max_hours=0"),
                         (dict(plan_gpu="Voodoo3"), "plan_gpu='Voodoo3'"),
                         (dict(plan_csv="x.csv"), "add plan=true"), (dict(plan_gpu="A100"), "add plan=true"),
                         (dict(plan_world_size=4), "add plan=true")):
        with pytest.raises(ValueError, match=message):
            RunConfig(**bad)


def test_plan_settings_do_not_name_the_run():
    from mer.rundir.layout import run_name_from_overrides

    assert run_name_from_overrides(["plan=true", "alpha=0", "allow_oversize=true", "max_hours=null",
                                    "plan_csv=/tmp/p.csv", "plan_mfu=0.5", "plan_gpu=A100"]) == "alpha=0"


# ------------------------------------------------------------------------------------------- the command line

SMALL = ["model=cpu-0.5m", "model.seq_len=32", "optim.batch_size=8", "data.budget_tokens=2048",
         "data.eval_tokens=200", "eval.every=4"]


@pytest.mark.slow
def test_plan_of_one_run_prints_the_costs_and_writes_nothing(tmp_path):
    result = _run(["-m", "mer.run", "plan=true", *SMALL, f"runs_dir={tmp_path}/runs", f"data.data_dir={tmp_path}/data",
                   f"plan_csv={tmp_path}/one.csv"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for text in ("plan of run", "non-embedding", "steps", "train new", "evaluation", "single", "ddp x8", "fsdp x8",
                 "time on this machine", "measured:", "GPU-hours on H100", "assumed MFU 40%", "fits this device"):
        assert text in out, text
    assert not (tmp_path / "data").exists()  # no data prepared
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())  # no run directory
    rows = list(csv.DictReader(open(tmp_path / "one.csv")))
    assert rows[0]["steps_per_task"] == "11 11 11 11 11" and rows[-1]["run_name"] == "TOTAL"


@pytest.mark.slow
def test_cli_refuses_a_gpu_preset_on_the_cpu_before_any_work(tmp_path):
    result = _run(["-m", "mer.run", "model=99m", "device=cpu", f"runs_dir={tmp_path}/runs",
                   f"data.data_dir={tmp_path}/data", "max_hours=24"], cwd=tmp_path)
    assert result.returncode == 2
    assert "refused: model=99m" in result.stderr and "estimated" in result.stderr
    assert "allow_oversize=true" in result.stderr
    assert not (tmp_path / "data").exists() and not (tmp_path / "runs" / "model=99m").exists()


@pytest.mark.slow
def test_plan_of_a_sweep_has_one_row_per_point_and_the_totals(tmp_path):
    """Through the Slurm launcher: in plan mode nothing is submitted; a point the config check refuses is a row."""
    result = _run(["-m", "mer.run", "-m", "plan=true", "alpha=0,0.5", "k=0,4,1000", *SMALL, "hydra/launcher=slurm",
                   f"runs_dir={tmp_path}/runs", f"data.data_dir={tmp_path}/data"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(open(tmp_path / "runs" / "plan.csv")))
    points, total = rows[:-1], rows[-1]
    assert len(points) == 6 and total["point"] == "TOTAL"
    refused = [r for r in points if r["flops_total"] == ""]
    assert len(refused) == 2 and all("k=1000 cannot fire" in r["refused"] for r in refused)
    costed = [r for r in points if r["flops_total"] != ""]
    for column in ("flops_train", "flops_eval", "flops_total", "disk_peak_bytes", "steps"):
        assert float(total[column]) == pytest.approx(sum(float(r[column]) for r in costed)), column
    assert float(total["gpu_hours"]) == pytest.approx(sum(float(r["gpu_hours"]) for r in costed))
    by_point = {r["point"]: r for r in costed}
    assert int(by_point["alpha=0 k=4"]["reptile_steps"]) == 5 * (8 // 4)  # 8 steps per task at alpha=0
    assert "total of 4 points" in result.stdout and "GPU-hours" in result.stdout
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["plan.csv"]  # no run directory, no .submitit
    assert not (tmp_path / "data").exists()


# ------------------------------------------------------------------------------------------- estimates vs measured

MEASURED = {  # the CPU model at the default batch and a wider, longer one
    "cpu-2m": dict(model="cpu-2m", seq_len=128, batch_size=16, budget_steps=3, eval_tokens=2000, eval_every=100,
                   eval_batch_size=8),
    "cpu-8m": dict(model="cpu-8m", seq_len=256, batch_size=8, budget_steps=3, eval_tokens=2000, eval_every=100,
                   eval_batch_size=8),
}


@pytest.fixture(scope="module")
def measured_runs(small_bible, tmp_path_factory):
    """For each spec: the plan's row and the measurements of the trained run, each in a process of its own."""
    data_dir = small_bible[0].data_dir
    results = {}
    for name, spec in MEASURED.items():
        spec = {**spec, "data_dir": data_dir, "runs_dir": str(tmp_path_factory.mktemp(name))}
        out = {}
        for mode in ("plan", "train"):
            done = _run([str(PROBE), mode, json.dumps(spec)], cwd=REPO)
            assert done.returncode == 0, done.stderr[-3000:]
            out[mode] = json.loads(done.stdout.strip().splitlines()[-1])
        results[name] = out
        print(f"{name}: memory estimate {out['plan']['memory_this_job_bytes'] / 2**20:.0f} MiB, measured RSS growth "
              f"{out['train']['rss_growth'] / 2**20:.0f} MiB; time estimate {out['plan']['hours_this_machine'] * 3600:.1f} s, "
              f"measured {out['train']['wall_time_s']:.1f} s")
    return results


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="resets the peak RSS through Linux's /proc")
@pytest.mark.parametrize("name", list(MEASURED))
def test_memory_estimate_is_within_20_percent_of_the_peak_rss_growth(measured_runs, name):
    plan, train = measured_runs[name]["plan"], measured_runs[name]["train"]
    estimate, growth = plan["memory_this_job_bytes"], train["rss_growth"]
    assert abs(estimate - growth) <= MEMORY_TOLERANCE * growth, (estimate, growth)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(MEASURED))
def test_time_estimate_is_within_the_stated_factor_of_a_measured_run(measured_runs, name):
    plan, train = measured_runs[name]["plan"], measured_runs[name]["train"]
    assert plan["rate_measured"] is True
    estimate, actual = plan["hours_this_machine"] * 3600, train["wall_time_s"]
    assert actual / TIME_FACTOR <= estimate <= actual * TIME_FACTOR, (estimate, actual)
    assert train["steps_per_task"] == {t: int(s) for t, s in zip(train["steps_per_task"],
                                                                 plan["steps_per_task"].split())}
    assert plan["flops_total"] == train["totals"]["flops_train"] + train["totals"]["flops_eval"]


@pytest.mark.slow
def test_an_optuna_sweep_refuses_a_plan(tmp_path):
    result = _run(["-m", "mer.run", "-m", "+sweep=optuna_mer", "plan=true", f"runs_dir={tmp_path}/runs",
                   f"data.data_dir={tmp_path}/data"], cwd=tmp_path)
    assert result.returncode != 0
    assert "an Optuna study picks each trial from the results of the earlier ones" in result.stderr
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").rglob("summary.json"))
