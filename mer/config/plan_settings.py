"""Checks of the plan and fit settings of `RunConfig` (plan, plan_*, max_hours, allow_oversize; docs/plan.md)."""

from __future__ import annotations

from typing import Any


def check_plan_settings(cfg: Any) -> None:
    """Raise ValueError naming the setting and a fix; `cfg` is a `mer.config.run_config.RunConfig`."""
    if not 0 < cfg.plan_mfu <= 1:
        raise ValueError(f"plan_mfu={cfg.plan_mfu!r} must be in (0, 1], e.g. 0.4 (the MFU assumed on a GPU)")
    if cfg.max_hours is not None and not cfg.max_hours > 0:
        raise ValueError(f"max_hours={cfg.max_hours!r} must be > 0, or null for no time limit")
    if cfg.plan_world_size is not None and (isinstance(cfg.plan_world_size, bool) or cfg.plan_world_size < 1):
        raise ValueError(f"plan_world_size={cfg.plan_world_size!r} must be >= 1, or null")
    if cfg.plan_gpu is not None:
        from mer.compute.mfu import GPU_PEAKS, peak_flops_from_table

        if peak_flops_from_table(cfg.plan_gpu, "fp32") is None:
            names = ", ".join(pattern.strip("\\b") for pattern, _, _ in GPU_PEAKS)
            raise ValueError(f"plan_gpu={cfg.plan_gpu!r} is not in mer.compute.mfu.GPU_PEAKS; use one of {names}")
        if cfg.precision == "bf16" and peak_flops_from_table(cfg.plan_gpu, "bf16") is None:
            raise ValueError(f"plan_gpu={cfg.plan_gpu!r} has no bf16 tensor cores; plan precision=bf16 on an "
                             "A100/H100-class GPU, or precision=fp32")
    # These three shape only what plan=true prints (the fit check of a run uses this job's own device and
    # world size): without it they would do nothing, so they are refused.
    if cfg.plan_csv is not None and not cfg.plan:
        raise ValueError(f"plan_csv={cfg.plan_csv!r} is written by plan=true only; add plan=true, or drop plan_csv")
    if cfg.plan_gpu is not None and not cfg.plan:
        raise ValueError(f"plan_gpu={cfg.plan_gpu!r} sets the GPU-hours of plan=true only; add plan=true, or drop "
                         "plan_gpu")
    if cfg.plan_world_size is not None and not cfg.plan:
        raise ValueError(f"plan_world_size={cfg.plan_world_size!r} sets the ddp/fsdp rows of plan=true only; add "
                         "plan=true, or drop plan_world_size")
