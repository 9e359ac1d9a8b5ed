"""The plan of one run: sizes, counts, FLOPs by kind, memory per device, disk and time (docs/plan.md).

`build_plan` gathers what `counts`, `memory`, `disk` and `timing` estimate; `format_plan` prints it and
`plan_row` flattens it into one CSV row of a sweep's plan. Nothing here trains, prepares data or writes a file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from mer.compute.flops import estimate_flops
from mer.config.run_config import RunConfig
from mer.plan.counts import RunCounts, count_run
from mer.plan.data_sizes import DataSizes, data_sizes
from mer.plan.disk import DiskEstimate, estimate_disk
from mer.plan.memory import MemoryEstimate, estimate_memory
from mer.plan.timing import DEFAULT_PLAN_GPU, Rate, gpu_rate, measured_cpu_rate

GiB = 2**30


@dataclass(frozen=True)
class Device:
    """Where the run would train: the device, its memory and how many processes the job has."""

    kind: str
    """cpu | cuda."""
    name: str
    memory: int
    """Bytes of the device's memory (host memory, within a cgroup limit, for the CPU)."""
    world_size: int


@dataclass(frozen=True)
class RunPlan:
    run_name: str
    model_name: str
    seq_len: int
    n_params: int
    n_params_nonembedding: int
    sizes: DataSizes
    counts: RunCounts
    flops: dict[str, int]
    """new, replay, reptile, train (= new + replay + reptile, docs/design.md), eval (None-free: 0 when unknown)
    and total (train + eval)."""
    eval_known: bool
    memory: dict[str, MemoryEstimate]
    """By parallelism mode: single, ddp and fsdp at `planned_world_size` processes."""
    this_job: MemoryEstimate
    """The mode and world size this job would use."""
    planned_world_size: int
    device: Device
    rate: Rate | None
    """Training FLOP/s of one device of this job (None: unknown GPU without peak_flops)."""
    gpu: str
    gpu_rate: Rate | None
    disk: DiskEstimate

    @property
    def hours(self) -> float | None:
        """Estimated wall-clock hours on this job's devices."""
        if self.rate is None:
            return None
        return self.flops["total"] / (self.rate.flops_per_s * self.device.world_size) / 3600

    @property
    def gpu_hours(self) -> float | None:
        """GPU-hours on `gpu` at the stated MFU (the same whatever the number of GPUs)."""
        return None if self.gpu_rate is None else self.flops["total"] / self.gpu_rate.flops_per_s / 3600


def _host_memory() -> int:
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for limit_file in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = open(limit_file).read().strip()
        except OSError:
            continue
        if text.isdigit():
            memory = min(memory, int(text))
    return memory


def current_device(cfg: RunConfig) -> Device:
    """The device, its memory and the world size of this job (`mer.parallel.distributed`'s view, nothing started)."""
    import torch

    from mer.parallel.distributed import resolve_device, world_from_env

    world = world_from_env()
    device = resolve_device(cfg.device, world.local_rank, world.world_size)
    if device.type == "cuda":
        return Device("cuda", torch.cuda.get_device_name(device), torch.cuda.get_device_properties(device).total_memory,
                      world.world_size)
    return Device("cpu", f"CPU ({os.cpu_count()} cores)", _host_memory(), world.world_size)


def _job_mode(cfg: RunConfig, device: Device) -> str:
    if device.world_size == 1:
        return "single"
    sharded = cfg.parallel == "fsdp" and (device.kind == "cuda" or cfg.fsdp_on_cpu)
    return "fsdp" if sharded else "ddp"


def build_plan(cfg: RunConfig, run_name: str, measure: bool = True, device: Device | None = None) -> RunPlan:
    """The plan of `cfg`'s run. `measure=False` does not time the model on a CPU: the rate is then the measured
    matmul rate, an upper bound (used by the fit check to decide cheaply whether a measurement is needed)."""
    from mer.compute.mfu import cpu_rate
    from mer.evaluation.windows import plan_windows
    from mer.model.llama import estimate_parameters

    device = device or current_device(cfg)
    sizes = data_sizes(cfg)
    model = cfg.model
    n_params, n_nonemb = estimate_parameters(model, sizes.vocab_size)
    rates = estimate_flops(n_params, n_nonemb, model.n_layer, model.seq_len, model.d_model, sizes.vocab_size)
    counts = count_run(cfg)
    context, stride = cfg.eval.windows(model.seq_len)
    eval_tokens_each = 0
    if sizes.held_out_tokens is not None:
        for n in sizes.held_out_tokens.values():
            windows = plan_windows(n, context, stride)
            eval_tokens_each += windows.n_windows * windows.length
    seq = model.seq_len
    flops = {"new": counts.rows_new * seq * rates.train_per_token,
             "replay": counts.rows_replay * seq * rates.train_per_token,
             "reptile": counts.reptile_steps * rates.reptile_per_step,
             "eval": counts.evaluations * eval_tokens_each * rates.eval_per_token}
    flops["train"] = flops["new"] + flops["replay"] + flops["reptile"]
    flops["total"] = flops["train"] + flops["eval"]

    planned_world = cfg.plan_world_size or (device.world_size if device.world_size > 1 else 8)
    reptile_on = bool(cfg.k) and cfg.eps < 1

    def memory(mode: str, world: int, kind: str) -> MemoryEstimate:
        on_device = cfg.reptile_anchor_device != "cpu" or kind == "cpu"  # a CPU run's host memory is its device
        return estimate_memory(model, sizes.vocab_size, n_params, n_nonemb, batch_size=cfg.optim.batch_size,
                               grad_accum=cfg.optim.grad_accum, eval_batch_size=cfg.eval.batch_size,
                               eval_context=context, precision=cfg.precision,
                               activation_checkpointing=cfg.activation_checkpointing, reptile_active=reptile_on,
                               anchor_on_device=on_device, mode=mode, world_size=world,
                               device_kind=kind)

    # ddp and fsdp are GPU modes: planned from a CPU machine, their rows are for GPUs.
    multi = device.kind if device.world_size > 1 else "cuda"
    modes = {"single": memory("single", 1, device.kind), "ddp": memory("ddp", planned_world, multi),
             "fsdp": memory("fsdp", planned_world, multi)}
    this_job = memory(_job_mode(cfg, device), device.world_size, device.kind)

    if device.kind == "cuda":
        rate = gpu_rate(device.name, cfg.precision, cfg.plan_mfu, cfg.peak_flops)
    elif measure:
        micro_rows = max(1, cfg.optim.batch_size // device.world_size // cfg.optim.grad_accum)
        key = tuple(sorted((k, v) for k, v in vars(model).items() if k not in ("name", "init_from")))
        rate = measured_cpu_rate(key, sizes.vocab_size, micro_rows, rates.train_per_token, cfg.optim.weight_decay,
                                 device.memory // 2)
    else:
        peak = cpu_rate()
        rate = Rate(peak.flops_per_s, f"upper bound: the {peak.describe()}, {peak.flops_per_s / 1e9:.1f} GFLOP/s",
                    False, peak.disturbed)
    gpu = cfg.plan_gpu or (device.name if device.kind == "cuda" else DEFAULT_PLAN_GPU)
    planned_gpu_rate = (rate if device.kind == "cuda" and cfg.plan_gpu is None
                        else gpu_rate(gpu, cfg.precision, cfg.plan_mfu, cfg.peak_flops if device.kind == "cuda" else None))
    return RunPlan(run_name=run_name, model_name=model.name, seq_len=model.seq_len, n_params=n_params, n_params_nonembedding=n_nonemb,
                   sizes=sizes, counts=counts, flops=flops, eval_known=sizes.held_out_tokens is not None,
                   memory=modes, this_job=this_job, planned_world_size=planned_world, device=device, rate=rate,
                   gpu=gpu, gpu_rate=planned_gpu_rate, disk=estimate_disk(cfg, counts, n_params, sizes.vocab_size))


def _gib(n: int) -> str:
    return f"{n / GiB:.2f} GiB" if n >= GiB / 100 else f"{n / 2**20:.1f} MiB"


def _duration(hours: float | None) -> str:
    if hours is None:
        return "unknown"
    if hours < 1 / 60:
        return f"{hours * 3600:.0f} s"
    if hours < 1:
        return f"{hours * 60:.1f} min"
    return f"{hours:.1f} h" if hours < 48 else f"{hours:.0f} h ({hours / 24:.0f} days)"


def format_plan(plan: RunPlan, refusal: str | None) -> str:
    """The plan as text (the output of `python -m mer.run ... plan=true`)."""
    c, f = plan.counts, plan.flops
    lines = [f"plan of run {plan.run_name} (nothing trained, nothing written)",
             f"model {plan.model_name}: {plan.n_params:,} parameters ({plan.n_params_nonembedding:,} non-embedding), "
             f"vocabulary {plan.sizes.vocab_size:,} (from {plan.sizes.source})",
             f"{'task':<10}{'steps':>10}{'new rows':>12}{'replay rows':>13}{'Reptile':>9}{'evals':>7}"]
    for t in c.tasks:
        lines.append(f"{t.name:<10}{t.steps:>10,}{t.rows_new:>12,}{t.rows_replay:>13,}{t.reptile_steps:>9,}"
                     f"{t.evaluations:>7,}")
    lines.append(f"{'total':<10}{c.steps:>10,}{c.rows_new:>12,}{c.rows_replay:>13,}{c.reptile_steps:>9,}"
                 f"{c.evaluations:>7,}  (+1 evaluation at step 0)")
    eval_note = "" if plan.eval_known else "  (unknown: held-out spans unknown before the data is prepared)"
    lines += ["FLOPs (mer.compute.flops.estimate_flops; docs/design.md):",
              f"  train new {f['new']:.3e}   replay {f['replay']:.3e}   Reptile {f['reptile']:.3e}   "
              f"= train {f['train']:.3e}",
              f"  evaluation {f['eval']:.3e}{eval_note}   total {f['total']:.3e}"]
    lines.append(f"memory per device ({plan.planned_world_size} processes for ddp/fsdp, which are GPU modes; "
                 "runtime: allocator and kernels, docs/plan.md):")
    lines.append(f"  {'mode':<14}{'weights':>11}{'gradients':>11}{'AdamW':>11}{'anchor':>11}{'activations':>13}"
                 f"{'copies':>11}{'runtime':>11}{'total':>11}")
    for mode, m in plan.memory.items():
        label = mode if mode == "single" else f"{mode} x{m.world_size}"
        anchor = _gib(m.reptile_anchor) + ("" if m.anchor_on_device or not m.reptile_anchor else "*")
        lines.append(f"  {label:<14}{_gib(m.weights):>11}{_gib(m.gradients):>11}{_gib(m.adamw):>11}{anchor:>11}"
                     f"{_gib(m.activations):>13}{_gib(m.working_copies):>11}{_gib(m.allocator):>11}"
                     f"{_gib(m.device_total):>11}")
    if any(m.host_anchor for m in plan.memory.values()):
        lines.append("  * the Reptile anchor is in host memory (reptile_anchor_device=cpu), not in the total")
    d = plan.device
    lines.append(f"this job: {plan.this_job.mode} on {d.name} x{d.world_size}, needs "
                 f"{_gib(plan.this_job.device_total)} of {_gib(d.memory)} per device")
    lines.append(f"disk: checkpoint {_gib(plan.disk.checkpoint)} (x2 while one is written), replay buffer "
                 f"{_gib(plan.disk.replay_buffer)}, exports {_gib(plan.disk.exports)}; peak {_gib(plan.disk.peak)}")
    how = plan.rate.how if plan.rate is not None else "unknown GPU: set peak_flops to get a time"
    lines.append(f"time on this machine: {_duration(plan.hours)} ({how})")
    if plan.gpu_rate is not None:
        lines.append(f"GPU-hours on {plan.gpu}: {plan.gpu_hours:.3g} ({plan.gpu_rate.how})")
    lines.append("fits this device" if refusal is None else f"would be refused: {refusal}")
    return "\n".join(lines)


def plan_row(plan: RunPlan, refusal: str | None) -> dict[str, Any]:
    """One CSV row of a sweep's plan (sizes in bytes, FLOPs as numbers, hours as floats)."""
    m = plan.memory
    return {
        "run_name": plan.run_name, "model": plan.model_name, "n_params": plan.n_params,
        "n_params_nonembedding": plan.n_params_nonembedding, "steps": plan.counts.steps,
        "steps_per_task": " ".join(str(t.steps) for t in plan.counts.tasks),
        "reptile_steps": plan.counts.reptile_steps, "evaluations": plan.counts.evaluations,
        "tokens_new": plan.counts.rows_new * plan.seq_len, "tokens_replay": plan.counts.rows_replay * plan.seq_len,
        **{f"flops_{kind}": value for kind, value in plan.flops.items()},
        "eval_known": plan.eval_known,
        "memory_single_bytes": m["single"].device_total, "memory_ddp_bytes": m["ddp"].device_total,
        "memory_fsdp_bytes": m["fsdp"].device_total, "planned_world_size": plan.planned_world_size,
        "memory_this_job_bytes": plan.this_job.device_total, "device": plan.device.name,
        "device_memory_bytes": plan.device.memory,
        "hours_this_machine": plan.hours, "rate_flops_per_s": plan.rate.flops_per_s if plan.rate else None,
        "rate_measured": bool(plan.rate and plan.rate.measured),
        "rate_disturbed": bool(plan.rate and plan.rate.disturbed),
        "gpu": plan.gpu, "gpu_hours": plan.gpu_hours,
        "disk_checkpoint_bytes": plan.disk.checkpoint, "disk_buffer_bytes": plan.disk.replay_buffer,
        "disk_exports_bytes": plan.disk.exports, "disk_peak_bytes": plan.disk.peak,
        "refused": refusal or "",
    }
