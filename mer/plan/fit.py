"""Refuse, before any work, a run whose estimated memory or time does not fit its device (docs/plan.md).

Memory: the estimate of this job's mode and world size (`mer.plan.memory`, an upper bound) against the
device's memory (the GPU's, or the host's within a cgroup limit). Time: the estimated hours on this job's
devices against `max_hours` (null: no limit). On a CPU the time is first bounded from below at the measured
matmul rate, which costs nothing (the trainer measures that rate anyway): a run that fits even 20 times
slower than that is accepted without timing its model; otherwise a few training steps are timed
(`mer.plan.timing`). `allow_oversize=true` skips both checks.
"""

from __future__ import annotations

from mer.config.run_config import RunConfig
from mer.plan.estimate import RunPlan, build_plan

CPU_SLOWDOWN_BOUND = 20
"""A CPU run whose time at the matmul peak is this many times below max_hours fits without a measurement."""


def _gib(n: int) -> str:
    return f"{n / 2**30:.1f} GiB"


def memory_refusal(cfg: RunConfig, plan: RunPlan) -> str | None:
    m, device = plan.this_job, plan.device
    if m.device_total <= device.memory:
        return None
    rows = max(1, cfg.optim.batch_size // device.world_size // cfg.optim.grad_accum)
    fixes = [f"optim.grad_accum={cfg.optim.grad_accum * 2} (fewer rows per micro-batch)",
             "activation_checkpointing=true"]
    activations = f"activations {_gib(m.activations)} for {rows} rows of {cfg.model.seq_len} tokens"
    if m.evaluation_peak:  # an evaluation batch is the peak: only a smaller one helps
        context, _ = cfg.eval.windows(cfg.model.seq_len)
        fixes = [f"a smaller eval.batch_size (now {cfg.eval.batch_size})"]
        activations = (f"activations {_gib(m.activations)} for an evaluation batch of eval.batch_size="
                       f"{cfg.eval.batch_size} windows of {context} tokens")
    if device.kind == "cuda":
        fixes.append("parallel=fsdp over several GPUs (torchrun/srun)")
    fixes.append("a smaller model")
    return (f"model={cfg.model.name} needs an estimated {_gib(m.device_total)} per device on {device.name} "
            f"({m.mode} x{m.world_size}: weights {_gib(m.weights)}, gradients {_gib(m.gradients)}, AdamW "
            f"{_gib(m.adamw)}, Reptile anchor {_gib(m.reptile_anchor if m.anchor_on_device else 0)}, "
            f"{activations}, copies {_gib(m.working_copies)}, "
            f"allocator and runtime {_gib(m.allocator)}) "
            f"but the device has {_gib(device.memory)}; try {', '.join(fixes)}; or allow_oversize=true to start "
            "anyway (see the whole estimate with plan=true)")


def time_refusal(cfg: RunConfig, plan: RunPlan) -> str | None:
    hours = plan.hours
    if cfg.max_hours is None or hours is None or hours <= cfg.max_hours:
        return None
    return (f"model={cfg.model.name} would train for an estimated {hours:,.1f} h on {plan.device.name} "
            f"x{plan.device.world_size} ({plan.flops['total']:.3e} FLOPs at {plan.rate.flops_per_s:.3e} FLOP/s per "
            f"device, {plan.rate.how}), more than max_hours={cfg.max_hours:g}; use a GPU, a smaller model or budget, "
            "or max_hours=null (no time limit) or allow_oversize=true to start anyway (see the whole estimate with "
            "plan=true)")


def fit_refusal(cfg: RunConfig, run_name: str, plan: RunPlan | None = None) -> str | None:
    """Why this run does not fit its device (memory first, then time), or None. `plan`: one already built."""
    if cfg.allow_oversize:
        return None
    if plan is None:
        plan = build_plan(cfg, run_name, measure=False)
        refusal = memory_refusal(cfg, plan)
        if refusal is not None or cfg.max_hours is None or plan.device.kind == "cuda":
            return refusal or time_refusal(cfg, plan)
        # CPU: the matmul rate bounds the time from below; time the model only where the answer is not clear.
        if plan.hours is not None and plan.hours * CPU_SLOWDOWN_BOUND <= cfg.max_hours:
            return None
        if plan.hours is not None and plan.hours > cfg.max_hours:
            return time_refusal(cfg, plan)
        plan = build_plan(cfg, run_name, measure=True, device=plan.device)
    return memory_refusal(cfg, plan) or time_refusal(cfg, plan)
