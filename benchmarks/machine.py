"""The machine a benchmark ran on, recorded with its results (shared by every script in benchmarks/)."""

from __future__ import annotations

import datetime
import os
import platform
import subprocess

import numpy as np


def machine_info() -> dict:
    """CPU model, cores, RAM, torch threads, versions and the load average now."""
    import torch

    model = platform.processor() or "unknown"
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        model = next((line.split(":", 1)[1].strip() for line in out.splitlines()
                      if line.startswith("Model name")), model)
    except (OSError, subprocess.SubprocessError):
        pass
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    try:
        with open("/proc/meminfo") as meminfo:
            mem_total = next((int(line.split()[1]) * 1024 for line in meminfo if line.startswith("MemTotal")), 0)
    except OSError:
        mem_total = 0
    return {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "cpu": model, "cpu_count": os.cpu_count(), "cores_usable": affinity, "ram_gb": round(mem_total / 1e9, 1),
        "torch_threads": torch.get_num_threads(), "torch": torch.__version__, "numpy": np.__version__,
        "python": platform.python_version(), "tokenizers_parallelism": os.environ.get("TOKENIZERS_PARALLELISM"),
        "loadavg_start": [round(x, 2) for x in os.getloadavg()],
    }


def format_machine(info: dict, extra: str = "") -> str:
    """Two lines for the top of a results table; `extra` is appended to the second."""
    return (f"machine: {info['cpu']}, {info['cpu_count']} logical CPUs ({info['cores_usable']} usable), "
            f"{info['ram_gb']} GB RAM, torch {info['torch']} with {info['torch_threads']} threads, "
            f"numpy {info['numpy']}, python {info['python']}\ndate: {info['date']}; load average (1/5/15 min) "
            f"at start {info['loadavg_start']}, at end {info.get('loadavg_end')}{extra}")
