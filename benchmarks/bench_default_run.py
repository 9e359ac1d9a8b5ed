"""What a newcomer waits for: `python -m mer.run` on the default config, end to end and its start-up by stage.

    python benchmarks/bench_default_run.py                 # 3 rounds, a few minutes on 2 quiet cores
    python benchmarks/bench_default_run.py --rounds 1 --skip-end-to-end

1. Start-up, in-process, stage by stage, as `mer.run` and `mer.launch.runner` do it: importing `mer.run` (in a
   fresh interpreter, so nothing is cached), composing and checking the config, the plan's fit check (which
   measures the CPU's matmul rate on a CPU), the data cache's checks (`prepare_data` with the data prepared),
   the task streams, the trainer (model build, optimizer, the MFU peak) and the first optimizer step.
2. End to end: `python -m mer.run runs_dir=<tmp>` with the data prepared, wall time of the whole command, and the
   run's own `wall_time_s` (the training loop: steps, evaluations, checkpoints); the difference is start-up and
   the closing summary.

Targets (issue #22): the default run in at most 60 s on 2 quiet cores with the data prepared. Tables give the
median over rounds and the min-max spread; the machine and its load average are printed, since cores may be
shared (then the numbers are upper bounds).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import format_machine, machine_info  # noqa: E402
from rounds import med, spread  # noqa: E402

TARGET_S = 60.0


def import_seconds() -> float:
    code = "import time; t = time.perf_counter(); import mer.run; print(time.perf_counter() - t)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def startup_stages(runs_dir: Path) -> dict[str, float]:
    """Seconds of each start-up stage, in the order a run takes them (the imports are timed apart)."""
    from hydra import compose, initialize_config_module

    import mer.run  # noqa: F401  (registers the configs, as the command does)
    from mer.config.run_config import RunConfig, to_dataclass
    from mer.data.pipeline import prepare_data
    from mer.data.stream import TaskSequence
    from mer.plan.fit import fit_refusal
    from mer.training.trainer import Trainer

    stages: dict[str, float] = {}
    t = time.perf_counter()
    with initialize_config_module(config_module="mer.conf", version_base="1.3"):
        composed = compose("config", overrides=[f"runs_dir={runs_dir}"])
    cfg = to_dataclass(composed, RunConfig)
    stages["config (compose + checks)"] = time.perf_counter() - t
    t = time.perf_counter()
    assert fit_refusal(cfg, "bench") is None
    stages["fit check (plan; CPU rate)"] = time.perf_counter() - t
    t = time.perf_counter()
    prepared = prepare_data(cfg.data)
    stages["data checks (prepared cache)"] = time.perf_counter() - t
    t = time.perf_counter()
    sequence = TaskSequence(prepared.shards, cfg.model.seq_len, cfg.n_new_per_step, cfg.seed, cfg.task_budgets,
                            cfg.data.budget_steps, cfg.data.allow_repeat, cfg.data.eval_tokens,
                            replay_blocks_per_step=cfg.n_replay_per_step,
                            replay_current_task=cfg.buffer.replay_current_task)
    stages["task streams"] = time.perf_counter() - t
    t = time.perf_counter()
    run_dir = runs_dir / "startup"
    run_dir.mkdir(parents=True, exist_ok=True)
    trainer = Trainer(cfg, sequence, len(prepared.tokenizer), run_dir)
    stages["trainer (model, optimizer, MFU peak)"] = time.perf_counter() - t
    t = time.perf_counter()
    trainer.evaluate(boundary=False)
    stages["step-0 evaluation"] = time.perf_counter() - t
    t = time.perf_counter()
    trainer.train_step(sequence.tasks[0])
    trainer.read_loss()
    stages["first optimizer step"] = time.perf_counter() - t
    return stages


def end_to_end(runs_dir: Path) -> tuple[float, float]:
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "mer.run", f"runs_dir={runs_dir}"], check=True, capture_output=True)
    wall = time.perf_counter() - t
    summary = json.loads((runs_dir / "default" / "summary.json").read_text())
    return wall, float(summary["wall_time_s"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--skip-end-to-end", action="store_true")
    args = parser.parse_args()
    info = machine_info()
    subprocess.run([sys.executable, "-m", "mer.data.prepare"], check=True, capture_output=True)  # data prepared
    imports, stages, walls, loops = [], {}, [], []
    for _ in range(args.rounds):
        imports.append(import_seconds())
        with tempfile.TemporaryDirectory() as tmp:
            for name, seconds in startup_stages(Path(tmp)).items():
                stages.setdefault(name, []).append(seconds)
        if not args.skip_end_to_end:
            with tempfile.TemporaryDirectory() as tmp:
                wall, loop = end_to_end(Path(tmp))
                walls.append(wall)
                loops.append(loop)
    info["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    print(format_machine(info, f"; {args.rounds} rounds"))
    print(f"\n{'start-up stage':<40}{'median s':>10}  {'min-max':>12}")
    for name, values in [("import mer.run (fresh interpreter)", imports), *stages.items()]:
        print(f"{name:<40}{med(values):>10.2f}  {spread(values, '{:.2f}'):>12}")
    if walls:
        print(f"\n{'python -m mer.run (data prepared)':<40}{'median s':>10}  {'min-max':>12}")
        print(f"{'whole command':<40}{med(walls):>10.1f}  {spread(walls):>12}")
        print(f"{'training loop (summary wall_time_s)':<40}{med(loops):>10.1f}  {spread(loops):>12}")
        outside = [w - loop for w, loop in zip(walls, loops)]
        print(f"{'start-up and closing (the difference)':<40}{med(outside):>10.1f}  {spread(outside):>12}")
        verdict = "meets" if med(walls) <= TARGET_S else "misses"
        print(f"\ntarget: the default run in at most {TARGET_S:.0f} s: {verdict} it ({med(walls):.1f} s)")


if __name__ == "__main__":
    main()
