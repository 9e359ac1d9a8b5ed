"""MFU maths and the GPU peak table, with exact numbers."""

from __future__ import annotations

import pytest
import torch

from mer.compute.mfu import device_peak_flops, measured_cpu_flops, mfu, peak_flops_from_table


@pytest.mark.parametrize(
    ("name", "precision", "peak"),
    [
        ("NVIDIA A100-SXM4-80GB", "bf16", 312e12),
        ("NVIDIA A100-PCIE-40GB", "fp32", 19.5e12),
        ("NVIDIA A100 80GB PCIe", "bf16", 312e12),
        ("NVIDIA H100 80GB HBM3", "bf16", 989e12),
        ("NVIDIA H100 PCIe", "bf16", 756e12),
        ("NVIDIA H100 NVL", "bf16", 835e12),
        ("NVIDIA H200", "bf16", 989e12),
        ("NVIDIA GH200 480GB", "bf16", 989e12),
        ("NVIDIA L40S", "bf16", 362e12),
        ("NVIDIA L40", "bf16", 181e12),
        ("NVIDIA L4", "fp32", 30.3e12),
        ("NVIDIA A10", "bf16", 125e12),
        ("NVIDIA RTX A6000", "bf16", 154.8e12),
        ("Tesla V100-SXM2-16GB", "fp32", 15.7e12),
        ("Tesla V100-PCIE-32GB", "fp32", 14e12),
        ("Tesla V100-SXM2-16GB", "bf16", None),  # no bf16 tensor cores
        ("NVIDIA A10G", "bf16", None),  # not the A10: unknown, not mistaken for it
        ("NVIDIA RTX A4000", "bf16", None),  # not an A40
        ("Some Future GPU", "bf16", None),
    ],
)
def test_peak_table(name, precision, peak):
    assert peak_flops_from_table(name, precision) == peak


def test_peak_table_refuses_an_unknown_precision():
    with pytest.raises(ValueError, match="precision='fp16'"):
        peak_flops_from_table("NVIDIA H100 80GB HBM3", "fp16")


def test_mfu_exact():
    # 8 H100s at 989 TFLOP/s doing 3.956e15 FLOPs in 1 s: 3.956e15 / 7.912e15 = 0.5
    assert mfu(3.956e15, 1.0, 989e12, 8) == 0.5
    # 234 TFLOPs of training in 3 s on one A100 (bf16): 78 of its 312 TFLOP/s
    assert mfu(234e12, 3.0, 312e12) == 0.25
    assert mfu(1e12, 0.5, 4e12) == 0.5
    assert mfu(1e12, 1.0, None) is None  # unknown peak: no figure rather than a wrong one
    assert mfu(1e12, 0.0, 1e12) is None


def test_device_peak_flops():
    assert device_peak_flops(torch.device("cpu"), "fp32", 2.5e12) == (2.5e12, "config peak_flops")
    peak, source = device_peak_flops(torch.device("cpu"), "fp32")
    assert peak == measured_cpu_flops() and peak > 1e8 and "measured" in source  # cached: the same number again
