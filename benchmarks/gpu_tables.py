"""bench_gpu.py's Markdown tables from the raw timings: throughput per variant, the issue's targets
(toolkit overhead, replay cost, MFU), Reptile's share of k steps, and the device line above them."""

from __future__ import annotations

import torch
from gpu_setup import MFU_TARGET, REPTILE_K, TRAINER0, Bench, GiB
from rounds import med, spread, verdict

from mer.compute.mfu import mfu


def tokens_per_s(r: dict, name: str) -> list[float]:
    return [r["tokens_per_round"] / s for s in r["variants"][name]["seconds"]]


def mfus(r: dict, name: str) -> list[float] | None:
    if r["peak_flops"] is None:
        return None
    flops = r["flops_per_token"] * r["tokens_per_round"]  # per round: FLOPs of every trained token
    return [mfu(flops, s, r["peak_flops"]) for s in r["variants"][name]["seconds"]]


def ratios(r: dict, numerator: str, denominator: str) -> list[float]:
    """Per-round throughput ratio numerator/denominator (same trained tokens per round: inverse time ratio)."""
    return [d / n for n, d in zip(r["variants"][numerator]["seconds"], r["variants"][denominator]["seconds"])]


def replay_name(r: dict) -> str:
    return next(n for n in r["variants"] if n.startswith("trainer alpha=") and n != TRAINER0)


def table_variants(results: list[dict]) -> str:
    lines = ["| model | variant | new + replay per step | trained tok/s | ms/step | MFU | ratio to plain "
             "| data wait share | peak GPU memory (GiB) |",
             "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in results:
        for name, v in r["variants"].items():
            u = mfus(r, name)
            shares = [w / s for w, s in zip(v["data_wait"], v["seconds"])]
            memory = f"{max(v['peak_bytes']) / GiB:.1f}" if v["peak_bytes"] else "n/a"
            lines.append(
                f"| {r['model']} | {name} | {r['rows'][name]} | {spread(tokens_per_s(r, name), '{:,.0f}')} "
                f"| {med(v['seconds']) / r['steps'] * 1e3:.1f} | {spread(u, '{:.1%}') if u else 'n/a'} "
                f"| {spread(ratios(r, name, 'plain'), '{:.3f}')} | {spread(shares, '{:.2%}')} | {memory} |")
    return "\n".join(lines)


def table_targets(results: list[dict]) -> str:
    lines = ["| model | params (non-emb.) | seq_len x batch / accum | trainer/plain (alpha=0) | target >= 0.95 "
             "| replay vs alpha=0, per trained token | target >= 0.98 (cost <= 2%) | MFU alpha=0 / replay "
             "| MFU target |",
             "| --- | --- | --- | ---: | --- | ---: | --- | ---: | --- |"]
    for r in results:
        replay = replay_name(r)
        overhead = ratios(r, TRAINER0, "plain")
        replay_cost = ratios(r, replay, TRAINER0)
        u0, ur = mfus(r, TRAINER0), mfus(r, replay)
        target = MFU_TARGET.get(r["model"])
        if u0 is None:
            mfu_cell, mfu_verdict = "n/a", "n/a (no peak FLOP/s for this device; set --peak-flops)"
        else:
            mfu_cell = f"{med(u0):.1%} / {med(ur):.1%}"
            mfu_verdict = ("reported (the >= 40% target is for 560m)" if target is None else
                           f"{verdict(min(med(u0), med(ur)), target, True, '{:.1%}')} (>= {target:.0%}, both)")
        lines.append(
            f"| {r['model']} | {r['n_params'] / 1e6:.1f}M ({r['n_params_nonembedding'] / 1e6:.1f}M) "
            f"| {r['seq_len']} x {r['batch']} / {r['grad_accum']} | {spread(overhead, '{:.3f}')} "
            f"| {verdict(med(overhead), 0.95, True, '{:.3f}')} | {spread(replay_cost, '{:.3f}')} "
            f"| {verdict(med(replay_cost), 0.98, True, '{:.3f}')} | {mfu_cell} | {mfu_verdict} |")
    return "\n".join(lines)


def table_reptile(results: list[dict]) -> str:
    lines = ["| model | params | anchor | interpolation ms | trainer ms/step (alpha=0) | share at k=500 "
             "| share at k=100 | target <= 1% at k=500 |",
             "| --- | ---: | --- | ---: | ---: | ---: | ---: | --- |"]
    for r in results:
        t_step = med(r["variants"][TRAINER0]["seconds"]) / r["steps"]
        for anchor, times in r["reptile"].items():
            t = med(times)
            shares = [t / (k * t_step) for k in REPTILE_K]
            lines.append(f"| {r['model']} | {r['n_params'] / 1e6:.1f}M | {anchor} "
                         f"| {spread([x * 1e3 for x in times], '{:.2f}')} | {t_step * 1e3:.1f} "
                         f"| {shares[0]:.3%} | {shares[1]:.3%} | {verdict(shares[0], 0.01, False, '{:.2%}')} |")
    return "\n".join(lines)


def device_line(bench: Bench, results: list[dict]) -> str:
    """The accelerator and the peak MFU is measured against, for the machine lines."""
    peak = results[0]["peak_flops"] if results else None
    against = "unknown (set --peak-flops)"
    if peak:
        rate = f"{peak / 1e12:.1f} TFLOP/s" if peak >= 1e12 else f"{peak / 1e9:.1f} GFLOP/s"
        against = f"{rate} ({results[0]['peak_source']})"
    if not bench.cuda:
        return f"\ndevice: cpu, {bench.precision}; MFU against {against}"
    props = torch.cuda.get_device_properties(bench.device)
    return (f"\ndevice: {props.name}, {props.total_memory / GiB:.1f} GiB, CUDA {torch.version.cuda}, "
            f"{bench.precision}; MFU against {against}")
