"""Model FLOPs utilisation (MFU): achieved training FLOP/s over the hardware's peak.

    MFU = (training FLOPs of the steps, from `mer.compute.flops.estimate_flops` rates x tokens trained)
          / (seconds those steps took) / (peak FLOP/s of one device x number of devices)

"Model" FLOPs: only the FLOPs the model needs (PaLM, Chowdhery et al. 2022, app. B): activation
recomputation (activation checkpointing) is work the hardware does but not model FLOPs, so it
lowers MFU, as it should.

Peaks are the dense (no sparsity) tensor-core bf16 rate and the plain fp32 (CUDA core, no TF32) rate
of each GPU from NVIDIA's data sheets; the device is matched on `torch.cuda.get_device_name()`. An
unknown GPU has no peak (MFU is then not reported) unless the config sets `peak_flops`. On CPU the
peak is the fp32 matmul rate of a short timed matmul (`cpu_rate`), measured at most once per process and cached
per machine with its date, load and whether other processes disturbed it, so CPU "MFU" is relative to the best
this machine's BLAS achieved, not to a data sheet.
"""

from __future__ import annotations

import functools
import json
import os
import platform
import re
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import torch

# (pattern on the device name, dense bf16 FLOP/s, fp32 FLOP/s); more specific names first.
# None: the GPU has no bf16 tensor cores (V100, T4: their fp16 peaks are 125 and 65 TFLOP/s).
GPU_PEAKS: tuple[tuple[str, float | None, float], ...] = (
    (r"\bGH200\b", 989e12, 67e12),
    (r"\bH200 NVL\b", 835e12, 60e12),
    (r"\bH200\b", 989e12, 67e12),
    (r"\bH100 NVL\b", 835e12, 60e12),
    (r"\bH100 PCIe\b", 756e12, 51e12),
    (r"\bH100\b", 989e12, 67e12),  # SXM5 ("NVIDIA H100 80GB HBM3")
    (r"\bA100\b", 312e12, 19.5e12),  # SXM4 and PCIe
    (r"\bL40S\b", 362e12, 91.6e12),
    (r"\bL40\b", 181e12, 90.5e12),
    (r"\bL4\b", 121e12, 30.3e12),
    (r"\bA40\b", 149.7e12, 37.4e12),
    (r"\bA10\b", 125e12, 31.2e12),  # not the A10G (a different part)
    (r"\bA6000\b", 154.8e12, 38.7e12),  # RTX A6000
    (r"\bV100-PCIE\b", None, 14e12),
    (r"\bV100\b", None, 15.7e12),
    (r"\bT4\b", None, 8.1e12),
)


def peak_flops_from_table(device_name: str, precision: str) -> float | None:
    """Peak FLOP/s of one GPU named `device_name` at `precision` ("bf16" or "fp32"); None if unknown."""
    if precision not in ("bf16", "fp32"):
        raise ValueError(f"precision={precision!r}: use 'bf16' or 'fp32'")
    for pattern, bf16, fp32 in GPU_PEAKS:
        if re.search(pattern, device_name, flags=re.IGNORECASE):
            return bf16 if precision == "bf16" else fp32
    return None


CPU_RATE_CACHE_ENV = "MER_CPU_RATE_CACHE"
"""Environment variable naming the per-machine cache file of the CPU matmul rate (default
~/.cache/mer/cpu_rate.json); set to an empty string, no cache is read or written."""
CPU_RATE_MAX_AGE_DAYS = 30
"""A cached rate older than this is measured again."""
BUSY_SHARE = 0.7
"""A measurement during which this process got less than this share of the CPU time its threads could use (other
processes held the cores) is "disturbed": said in the output, and not trusted from the cache."""


@dataclass(frozen=True)
class CpuRate:
    """This machine's fp32 matmul rate, and when and how undisturbed its measurement was."""

    flops_per_s: float
    measured_at: str
    """UTC date and time of the measurement that gave the rate."""
    cpu_share: float
    """CPU time this process got over wall time x threads during the measurement (1: it had the cores to itself)."""
    load: float
    """The 1-minute load average then."""
    cores: int
    """Cores this process may use."""
    cached: bool
    """Read from the per-machine cache (no measurement in this process)."""

    @property
    def disturbed(self) -> bool:
        return self.cpu_share < BUSY_SHARE

    def describe(self) -> str:
        when = f"{'cached, ' if self.cached else ''}{self.measured_at[:16].replace('T', ' ')} UTC"
        text = (f"measured CPU fp32 matmul rate ({when}, load {self.load:.1f} on {self.cores} cores, "
                f"{self.cpu_share:.0%} of the CPU time)")
        if self.disturbed:
            text += "; the machine was busy while measuring (other processes held the cores), so the rate may be low"
        return text


def _machine_key() -> str:
    """What the rate depends on: host, CPU model, usable cores, torch threads and version."""
    model = ""
    try:
        with open("/proc/cpuinfo") as handle:
            model = next((line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")), "")
    except OSError:
        pass
    return f"{platform.node()}|{model or platform.processor()}|{_cores()} cores|{torch.get_num_threads()} threads|" \
           f"torch {torch.__version__}"


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _cache_path() -> Path | None:
    value = os.environ.get(CPU_RATE_CACHE_ENV)
    if value == "":
        return None
    return Path(value).expanduser() if value else Path.home() / ".cache" / "mer" / "cpu_rate.json"


def _read_cache(path: Path | None) -> dict:
    try:
        entries = json.loads(path.read_text()) if path is not None else {}
    except (OSError, ValueError):
        return {}
    return entries if isinstance(entries, dict) else {}


def _write_cache(path: Path | None, entries: dict) -> None:
    """Best effort (a cache): a read-only home or a full disk only costs a measurement next time."""
    if path is None:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        temporary.write_text(json.dumps(entries, indent=2))
        os.replace(temporary, path)  # readers see the old file or the new one, never half of one
    except OSError:
        pass


def _measure(n: int, windows: int, window_seconds: float) -> tuple[float, float]:
    """(best FLOP/s of several short matmul windows, share of the CPU time this process got meanwhile)."""
    a, b = torch.randn(n, n), torch.randn(n, n)  # [n, n] each
    a @ b  # warm up the BLAS threads
    best = 0.0
    wall0, cpu0 = time.perf_counter(), time.process_time()
    for _ in range(windows):
        reps, started = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - started) < window_seconds or reps == 0:
            a @ b
            reps += 1
        best = max(best, 2 * n**3 * reps / elapsed)
    usable = min(torch.get_num_threads(), _cores())
    share = (time.process_time() - cpu0) / max((time.perf_counter() - wall0) * usable, 1e-9)
    return best, min(share, 1.0)


@functools.cache
def cpu_rate(n: int = 512, windows: int = 5, window_seconds: float = 0.05) -> CpuRate:
    """This machine's fp32 matmul rate (2 n^3 FLOPs per n x n matmul): at most one measurement per process, none
    where the per-machine cache holds an undisturbed one of the last CPU_RATE_MAX_AGE_DAYS days.

    The best of several short windows: on shared cores a single window can land on a moment when other processes
    hold the CPU and report a small fraction of the machine's rate (and so an MFU above 100%). Other processes only
    ever slow a measurement down, so the cache keeps the best rate measured on this machine; a measurement during
    which this process did not get the cores (`BUSY_SHARE`) is said to be disturbed and is made again next time.
    """
    path, key = _cache_path(), _machine_key()
    entries = _read_cache(path)
    entry = entries.get(key) if isinstance(entries.get(key), dict) else None
    now = datetime.now(timezone.utc)
    try:
        fresh = entry is not None and now - datetime.fromisoformat(entry["measured_at"]) < timedelta(
            days=CPU_RATE_MAX_AGE_DAYS)
        if fresh and entry["cpu_share"] >= BUSY_SHARE:
            return CpuRate(float(entry["flops_per_s"]), entry["measured_at"], float(entry["cpu_share"]),
                           float(entry["load"]), _cores(), cached=True)
    except (KeyError, TypeError, ValueError):  # a damaged entry: measure again
        fresh = False
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    flops, share = _measure(n, windows, window_seconds)
    rate = CpuRate(flops, now.isoformat(timespec="seconds"), share, load, _cores(), cached=False)
    if fresh and float(entry["flops_per_s"]) > flops:  # an earlier measurement saw more of the machine: keep it
        rate = CpuRate(float(entry["flops_per_s"]), entry["measured_at"], float(entry["cpu_share"]),
                       float(entry["load"]), _cores(), cached=True)
    entries[key] = {"flops_per_s": rate.flops_per_s, "measured_at": rate.measured_at, "cpu_share": rate.cpu_share,
                    "load": rate.load}
    _write_cache(path, entries)
    return rate


def measured_cpu_flops() -> float:
    """fp32 matmul FLOP/s of this machine's CPU (`cpu_rate`: measured at most once per process, cached per machine)."""
    return cpu_rate().flops_per_s


def device_peak_flops(device: torch.device, precision: str, override: float | None = None) -> tuple[float | None, str]:
    """(peak FLOP/s of one device, where the number comes from) for this run's device and precision."""
    if override is not None:
        return float(override), "config peak_flops"
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        peak = peak_flops_from_table(name, precision)
        return peak, f"{name} {precision} data sheet" if peak else f"{name} (not in mer.compute.mfu.GPU_PEAKS; set peak_flops)"
    rate = cpu_rate()
    return rate.flops_per_s, rate.describe()


def mfu(flops: float, seconds: float, peak_flops: float | None, n_devices: int = 1) -> float | None:
    """Fraction of the peak that `flops` done in `seconds` on `n_devices` devices achieved; None if unknown."""
    if peak_flops is None or seconds <= 0 or n_devices < 1:
        return None
    return flops / seconds / (peak_flops * n_devices)
