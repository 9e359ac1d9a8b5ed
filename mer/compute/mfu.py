"""Model FLOPs utilisation (MFU): achieved training FLOP/s over the hardware's peak.

    MFU = (training FLOPs of the steps, from `mer.compute.flops.estimate_flops` rates x tokens trained)
          / (seconds those steps took) / (peak FLOP/s of one device x number of devices)

"Model" FLOPs: only the FLOPs the model needs (PaLM, Chowdhery et al. 2022, app. B): activation
recomputation (activation checkpointing) is work the hardware does but not model FLOPs, so it
lowers MFU, as it should.

Peaks are the dense (no sparsity) tensor-core bf16 rate and the plain fp32 (CUDA core, no TF32) rate
of each GPU from NVIDIA's data sheets; the device is matched on `torch.cuda.get_device_name()`. An
unknown GPU has no peak (MFU is then not reported) unless the config sets `peak_flops`. On CPU the
peak is the fp32 matmul rate measured once per process with a short timed matmul, so CPU "MFU" is
relative to what this machine's BLAS achieves, not to a data sheet.
"""

from __future__ import annotations

import functools
import re
import time

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


@functools.cache
def measured_cpu_flops(n: int = 512, windows: int = 5, window_seconds: float = 0.05) -> float:
    """fp32 matmul FLOP/s this process gets on the CPU (2 n^3 FLOPs per n x n matmul), measured once.

    The best of several short windows: on shared cores a single window can land on a moment when other
    processes hold the CPU and report a small fraction of the machine's rate (and so an MFU above 100%).
    """
    a, b = torch.randn(n, n), torch.randn(n, n)  # [n, n] each
    a @ b  # warm up the BLAS threads
    best = 0.0
    for _ in range(windows):
        reps, started = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - started) < window_seconds or reps == 0:
            a @ b
            reps += 1
        best = max(best, 2 * n**3 * reps / elapsed)
    return best


def device_peak_flops(device: torch.device, precision: str, override: float | None = None) -> tuple[float | None, str]:
    """(peak FLOP/s of one device, where the number comes from) for this run's device and precision."""
    if override is not None:
        return float(override), "config peak_flops"
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        peak = peak_flops_from_table(name, precision)
        return peak, f"{name} {precision} data sheet" if peak else f"{name} (not in mer.compute.mfu.GPU_PEAKS; set peak_flops)"
    return measured_cpu_flops(), "measured CPU fp32 matmul rate"


def mfu(flops: float, seconds: float, peak_flops: float | None, n_devices: int = 1) -> float | None:
    """Fraction of the peak that `flops` done in `seconds` on `n_devices` devices achieved; None if unknown."""
    if peak_flops is None or seconds <= 0 or n_devices < 1:
        return None
    return flops / seconds / (peak_flops * n_devices)
