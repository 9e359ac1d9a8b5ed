"""The plan's estimates against measured CPU runs: memory (peak resident-set growth) and wall time.

    python benchmarks/plan_vs_measured.py                 # cpu-2m (batch 16) and cpu-8m (batch 8), ~2-5 min
    python benchmarks/plan_vs_measured.py --steps 10      # longer runs

Prepares the small five-language Bible sequence of the tests in a temporary folder, then for each model runs
`tests/plan_probe.py` twice, each in a fresh process: `plan` (the row of `plan=true`, its CPU rate measured
by timing a few training steps) and `train` (the real run, its VmHWM reset after data preparation and read
after training; one torch thread in both). Prints one line per model: estimate, measurement and their ratio.
tests/test_plan.py asserts the same within 20% (memory) and a factor 3 (time); docs/plan.md records results.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "tests"), str(REPO), str(REPO / "benchmarks")]

SPECS = {
    "cpu-2m": dict(model="cpu-2m", seq_len=128, batch_size=16, eval_tokens=2000, eval_every=100, eval_batch_size=8),
    "cpu-8m": dict(model="cpu-8m", seq_len=256, batch_size=8, eval_tokens=2000, eval_every=100, eval_batch_size=8),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3, help="optimizer steps per task (5 tasks)")
    args = parser.parse_args()
    from machine import machine_info
    from mer_testing import small_bible_config

    from mer.data.pipeline import prepare_data

    with tempfile.TemporaryDirectory() as folder:
        data = small_bible_config(Path(folder) / "data")
        prepare_data(data)
        print(json.dumps(machine_info()))
        print(f"{'model':<8}{'memory est MiB':>16}{'RSS growth MiB':>16}{'ratio':>7}{'time est s':>12}"
              f"{'wall s':>9}{'ratio':>7}")
        for name, spec in SPECS.items():
            spec = {**spec, "budget_steps": args.steps, "data_dir": data.data_dir,
                    "runs_dir": str(Path(folder) / name)}
            out = {}
            for mode in ("plan", "train"):
                done = subprocess.run([sys.executable, str(REPO / "tests" / "plan_probe.py"), mode, json.dumps(spec)],
                                      capture_output=True, text=True, check=True, cwd=REPO)
                out[mode] = json.loads(done.stdout.strip().splitlines()[-1])
            memory, growth = out["plan"]["memory_this_job_bytes"], out["train"]["rss_growth"]
            hours, wall = out["plan"]["hours_this_machine"], out["train"]["wall_time_s"]
            print(f"{name:<8}{memory / 2**20:>16.0f}{growth / 2**20:>16.0f}{memory / growth:>7.2f}"
                  f"{hours * 3600:>12.1f}{wall:>9.1f}{hours * 3600 / wall:>7.2f}")


if __name__ == "__main__":
    main()
