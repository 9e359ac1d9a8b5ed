"""Smoke test of benchmarks/bench_gpu.py on CPU: it runs end to end and reports sane numbers.

No timing thresholds (DESIGN.md: benchmark numbers are reported, never asserted); only that every
table row is there and every number in it is positive and finite.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = ("plain", "trainer alpha=0", "trainer alpha=0.5")


def first_number(cell: str) -> float:
    """The median of a 'median (min-max)' cell: '3,086 (3,004-3,168)' -> 3086.0, '37.3% (...)' -> 37.3."""
    match = re.match(r"\s*([0-9][0-9,]*\.?[0-9]*)", cell)
    assert match, f"no number in table cell {cell!r}"
    return float(match.group(1).replace(",", ""))


def rows(stdout: str, first_cell: str) -> list[list[str]]:
    """Table rows (as lists of cells) whose first cell is `first_cell`."""
    found = []
    for line in stdout.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0] == first_cell:
            found.append(cells)
    return found


def test_bench_gpu_runs_on_cpu(tmp_path):
    out = tmp_path / "bench.json"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    command = [sys.executable, str(ROOT / "benchmarks" / "bench_gpu.py"), "--device", "cpu", "--models", "cpu-0.5m",
               "--seq-len", "64", "--batch", "4", "--rounds", "2", "--steps", "1", "--warmup", "1",
               "--task-tokens", "40000", "--data-dir", str(tmp_path / "data"), "--json", str(out)]
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    stdout = done.stdout

    # Per-variant table: tokens/s, ms/step, MFU, ratio to plain and data-wait share are numbers > 0.
    variant_rows = rows(stdout, "cpu-0.5m")
    for name in VARIANTS:
        row = next((r for r in variant_rows if r[1] == name), None)
        assert row is not None, f"no table row for {name}:\n{stdout}"
        values = [first_number(cell) for cell in row[3:8]]
        assert all(math.isfinite(v) and v > 0 for v in values), row
        assert row[8] == "n/a"  # no GPU memory on CPU
    # Targets and Reptile tables: one row each (the GPU anchor exists only on CUDA).
    targets = [r for r in variant_rows if r[2] == "64 x 4 / 1"]
    assert len(targets) == 1 and first_number(targets[0][3]) > 0 and first_number(targets[0][5]) > 0
    reptile = [r for r in variant_rows if len(r) > 2 and r[2] == "cpu"]
    assert len(reptile) == 1 and first_number(reptile[0][3]) > 0
    assert "device: cpu, fp32" in stdout

    # The raw timings.
    result = json.loads(out.read_text())["results"][0]
    assert result["flops_per_token"] > 0 and result["peak_flops"] > 0
    for name in VARIANTS:
        timings = result["variants"][name]
        assert len(timings["seconds"]) == 2
        assert all(math.isfinite(s) and s > 0 for s in timings["seconds"])
        assert all(math.isfinite(w) and w >= 0 for w in timings["data_wait"])
    assert result["buffer_blocks"] > 0  # the replay variant's buffer was pre-filled with tasks 1-2
    assert all(math.isfinite(s) and s > 0 for s in result["reptile"]["cpu"])
    # The synthetic data stay in --data-dir (kept and reused), in the pre-tokenized layout.
    assert sorted(p.name for p in (tmp_path / "data" / "tokens-4096").iterdir())[:2] == ["task1-train.bin",
                                                                                       "task1-val.bin"]
