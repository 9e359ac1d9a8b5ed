"""A subprocess for tests/test_plan.py and benchmarks/plan_vs_measured.py: plan a run, or train it and measure it.

    python tests/plan_probe.py plan  SPEC_JSON   -> prints the plan's row as JSON
    python tests/plan_probe.py train SPEC_JSON   -> trains, prints {"rss_growth", "wall_time_s", ...} as JSON

SPEC_JSON: {"data_dir": ..., "runs_dir": ..., "model": "cpu-2m", "seq_len": 128, ...RunConfig fields}.
Memory is measured in a process of its own, so that nothing allocated by an earlier step (the plan's timed
steps, another test) stays in its heap: after the data is prepared, the kernel's high-water mark of the
resident set (VmHWM) is reset (/proc/self/clear_refs, Linux) and read again after training; the growth is the
peak minus the resident set at the reset.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

sys.path[:0] = [str(Path(__file__).parent), str(Path(__file__).parents[1])]  # mer_testing; this checkout's mer


def build_config(spec: dict):
    from mer_testing import small_bible_config, tiny_run_config

    from mer.config.run_config import EvalConfig
    from mer.model.llama import get_preset
    from mer.optim.schedule import OptimConfig

    spec = dict(spec)
    data = small_bible_config(Path(spec.pop("data_dir")))
    model = get_preset(spec.pop("model", "cpu-0.5m"), seq_len=spec.pop("seq_len", 32))
    optim = OptimConfig(lr=3e-3, min_lr=3e-4, batch_size=spec.pop("batch_size", 8),
                        grad_accum=spec.pop("grad_accum", 1))
    evaluation = EvalConfig(every=spec.pop("eval_every", 8), batch_size=spec.pop("eval_batch_size", 4))
    data_fields = {key: spec.pop(key) for key in ("budget_steps", "eval_tokens") if key in spec}
    budget_tokens = spec.pop("budget_tokens", 2048)
    cfg = tiny_run_config(data, Path(spec.pop("runs_dir")), model=model, optim=optim, eval=evaluation,
                          budget_tokens=budget_tokens, **spec)
    if data_fields:
        if "budget_steps" in data_fields:
            data_fields["budget_tokens"] = None
        cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, **data_fields))
    return cfg


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def main() -> None:
    mode, spec = sys.argv[1], json.loads(sys.argv[2])
    import torch

    torch.set_num_threads(int(spec.pop("threads", 1)))  # one thread: steady timings on a shared machine
    cfg = build_config(spec)
    name = "probe"
    if mode == "plan":
        from mer.plan.estimate import build_plan, plan_row

        plan = build_plan(cfg, name, measure=True)
        row = plan_row(plan, None)
        row["activations_bytes"] = plan.this_job.activations
        print(json.dumps(row))
        return
    import mer.training.trainer  # noqa: F401
    from mer.data.pipeline import prepare_data
    from mer.launch.runner import run_training

    prepare_data(cfg.data)
    from transformers import LlamaForCausalLM  # noqa: F401  (the code is the program's memory, not the run's)

    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current resident set
    baseline = _status_kib("VmRSS") * 1024
    summary = run_training(cfg, name, dataclasses.asdict(cfg))
    peak = _status_kib("VmHWM") * 1024
    print(json.dumps({"rss_baseline": baseline, "rss_peak": peak, "rss_growth": peak - baseline,
                      "wall_time_s": summary["wall_time_s"], "steps_per_task": summary["steps_per_task"],
                      "reptile_steps_per_task": summary["reptile_steps_per_task"], "totals": summary["totals"],
                      "n_params": summary["n_params"], "n_params_nonembedding": summary["n_params_nonembedding"]}))


if __name__ == "__main__":
    main()
