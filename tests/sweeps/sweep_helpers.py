"""Helpers of the sweep tests: tiny-run overrides, a `python -m mer.run` runner, run-directory readers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SLURM_SCRIPT = REPO / "scripts" / "slurm_local.sh"


def tiny_overrides(data_dir: Path, budget_tokens: int = 2000) -> list[str]:
    """A two-task run of a 0.16M-parameter model over a few steps (seconds on one CPU thread)."""
    return [
        "model=cpu-0.5m", f"data.budget_tokens={budget_tokens}", "optim.batch_size=8", "eval.every=1000",
        "data.eval_tokens=513", f"data.data_dir={data_dir}", "threads=1",
        "data.tasks=[{name:en,max_train_documents:40},{name:fr,max_train_documents:40}]",
        "data.tokenizer.vocab_size=512", "data.tokenizer.train_chars_per_task=20000",
    ]


def run_mer(args: list[str], cwd: Path = REPO, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess:
    """`python -m mer.run <args>` in a fresh process (Hydra, signals and plugins as a user gets them)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "HYDRA_FULL_ERROR": "1"}
    proc = subprocess.run([sys.executable, "-m", "mer.run", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"mer.run {' '.join(args)} exited {proc.returncode}:\n{proc.stdout[-3000:]}\n"
                             f"{proc.stderr[-6000:]}")
    return proc


def run_dirs(sweep_dir: Path) -> list[Path]:
    return sorted(p for p in Path(sweep_dir).iterdir() if (p / "summary.json").exists())


def summary(run_dir: Path) -> dict:
    return json.loads((Path(run_dir) / "summary.json").read_text())


def metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines() if line.strip()]


def compose(overrides: list[str]):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module

    from mer.config.run_config import register_configs
    from sweeps.plugins import register_hydra_plugins

    register_configs()
    register_hydra_plugins()
    with initialize_config_module(config_module="mer.conf", version_base="1.3"):
        return hydra_compose("config", overrides=overrides, return_hydra_config=True)
