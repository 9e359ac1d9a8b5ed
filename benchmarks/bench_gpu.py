"""Single-GPU throughput and MFU of the trainer against a plain PyTorch loop; the cost of replay and of Reptile.

    python benchmarks/bench_gpu.py                                  # one H100/H200: 560m and 99m, bf16 (~3 min)
    python benchmarks/bench_gpu.py --models 560m --compile --json gpu.json
    python benchmarks/bench_gpu.py --device cpu                     # CPU smoke check: cpu-2m, fp32 (~20 s)

For every model preset (`mer.model.llama.PRESETS`; the paper's ladder runs at seq_len 2048 and vocabulary
50304), three variants train on the same synthetic data, interleaved in this one process: a round
runs every variant for `--steps` optimizer steps of `--batch` sequences, the order rotating from
round to round so that each variant goes first, second and third alike; tables give the median over
`--rounds` rounds with the min-max spread. `--warmup` steps of every variant come first, untimed
(allocator, cuDNN/cuBLAS heuristics, torch.compile). On CUDA every timed region starts and ends with
`torch.cuda.synchronize()`, so a time is the GPU's work, not the launch queue's.

plain              nanoGPT's loop over the model: a seeded random batch of blocks read from the task's
                   memory-mapped shard with numpy, pinned and copied to the GPU, bf16 autocast forward,
                   cross-entropy, backward, clip, AdamW step, zero_grad; nothing else. By default it drives
                   the alpha=0 trainer's own model, compiled module and optimizer (`--plain-model shared`:
                   the same `build_model` / `build_optimizer` objects, and one 560m copy fewer in GPU
                   memory); `--plain-model own` builds its own with the same calls and seed.
trainer alpha=0    `Trainer.train_step` (the per-step path of fit(), without its eval/log/checkpoint).
trainer alpha=0.5  the same at `--alpha`, in the middle of a run: the buffer holds every block of tasks
                   1 and 2 (by reference, the default buffer) and training runs on task 3, so the replayed
                   half of every batch is random block reads from three shards on disk.

Reported per variant: trained tokens/s (new + replayed), ms/step, MFU (FLOPs per trained token from
`mer.compute.flops.estimate_flops`, the peak from `mer.compute.mfu.device_peak_flops`), the ratio to the plain loop,
the share of step time spent getting the batch (host time from the start of the step to the batch
being queued for the GPU: `Trainer.data_wait_s`, or the same span of the plain loop), and peak GPU
memory (what the variant would need alone: its weights and AdamW state plus the most its steps
allocated on top of everything resident, since all variants live in this one process). Targets (the issue): MFU >= 40%
for 560m in bf16; replay at alpha=0.5 costs <= 2% of throughput per trained token against alpha=0;
trainer/plain >= 0.95 (bench_trainer's target). Reptile: one `Reptile.maybe_step` interpolation
(k=500, eps=0.1) on the alpha=0 trainer's model, anchor on the CPU (the default
`reptile_anchor_device`) and on the GPU, in ms and as a share of k trainer steps (k=500 and 100).

Data: 3 tasks of uniform random tokens (`--task-tokens` each; 16M = 32 MB at vocab 50304) written as
pre-tokenized files with a tokenizer of the preset's vocabulary (`synthetic_tokens.py`) and prepared by
`mer.data.pipeline.prepare_data` like any `source: tokens` data set, in `--data-dir` (kept, reused) or a
temporary directory (deleted). Run directories go to a temporary directory, deleted at the end.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from machine import format_machine, machine_info
from rounds import log, med, rotated, spread, verdict
from synthetic_tokens import synthetic_data_config

from mer.compute.flops import estimate_flops
from mer.compute.mfu import device_peak_flops, mfu
from mer.config.run_config import RunConfig
from mer.data.config import DataConfig
from mer.data.pipeline import PreparedData, prepare_data
from mer.data.stream import TaskSequence
from mer.model.llama import PRESET_VOCAB, build_model, get_preset
from mer.optim.reptile import Reptile, ReptileConfig
from mer.optim.schedule import OptimConfig, build_optimizer
from mer.parallel.distributed import resolve_device
from mer.replay.buffer import BufferConfig
from mer.training.trainer import Trainer

N_TASKS = 3  # tasks 1-2 fill the buffer, task 3 is trained on
REPLAY_TASK = 2  # index of the task every variant trains on
MFU_TARGET = {"560m": 0.40}  # the target; other presets are reported without one
REPTILE_K = (500, 100)
GiB = 2**30
TRAINER0 = "trainer alpha=0"  # the variant Reptile is timed on and the replay variant is compared with


@dataclass
class Bench:
    """The resolved settings shared by every model of one invocation."""

    device: torch.device
    """Where training runs."""
    precision: str
    """bf16 (autocast, fp32 master weights) or fp32."""
    batch: int
    """Sequences per optimizer step (new + replayed)."""
    grad_accum: int
    """Micro-batches per optimizer step."""
    seq_len: int | None
    """Block length overriding the presets' (None keeps theirs: 2048 for the paper's ladder)."""
    compile: bool
    """torch.compile the training forward/backward."""
    activation_checkpointing: bool
    """Recompute each block's activations in the backward pass."""
    alpha: float
    """Replay ratio of the replay variant."""
    prefetch: bool
    """buffer.prefetch of the replay variant."""
    plain_model: str
    """shared: the plain loop drives the alpha=0 trainer's model and optimizer; own: it builds its own."""
    warmup: int
    """Untimed steps of every variant before the rounds."""
    steps: int
    """Optimizer steps per variant and round."""
    rounds: int
    """Interleaved rounds."""
    reptile_reps: int
    """Reptile interpolations timed per anchor device and round."""
    peak_flops: float | None
    """Peak FLOP/s of the device for MFU (None: mer.compute.mfu's table or the measured CPU rate)."""

    def __post_init__(self) -> None:
        if not 0 < self.alpha < 1:
            raise ValueError(f"--alpha {self.alpha} must be in (0, 1): alpha=0 is always measured")
        if self.batch % self.grad_accum:
            raise ValueError(f"--batch {self.batch} is not divisible by --grad-accum {self.grad_accum}")
        for name in ("steps", "rounds", "reptile_reps"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1")
        if self.warmup < 0:
            raise ValueError("--warmup must be >= 0")

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    def sync(self) -> None:
        """Wait for the GPU's queued work, so that a wall-clock time covers it."""
        if self.cuda:
            torch.cuda.synchronize(self.device)

    def autocast(self):
        return torch.autocast("cuda", dtype=torch.bfloat16) if self.precision == "bf16" else nullcontext()


# ------------------------------------------------------------------------------------------ setup
def run_config(bench: Bench, model: str, alpha: float, data: DataConfig, runs_dir: Path) -> RunConfig:
    """The default config (conf/config.yaml + groups) with this benchmark's knobs; k=0: Reptile is timed apart."""
    model_cfg = get_preset(model) if bench.seq_len is None else get_preset(model, seq_len=bench.seq_len)
    return RunConfig(
        alpha=alpha, k=0, eps=0.1, seed=0, model=model_cfg, data=data,
        optim=OptimConfig(lr=3e-3, min_lr=3e-4, batch_size=bench.batch, grad_accum=bench.grad_accum),
        buffer=BufferConfig(policy="all", storage="reference", prefetch=bench.prefetch),
        runs_dir=str(runs_dir), device=str(bench.device), precision=bench.precision, compile=bench.compile,
        activation_checkpointing=bench.activation_checkpointing,
    )


def make_trainer(cfg: RunConfig, prepared: PreparedData, runs_dir: Path, name: str) -> Trainer:
    """A trainer positioned on task 3, with the TaskSequence built as `mer.launch.runner` builds it."""
    sequence = TaskSequence(
        prepared.shards, cfg.model.seq_len, cfg.n_new_per_step, cfg.seed, cfg.task_budgets, cfg.data.budget_steps,
        cfg.data.allow_repeat, cfg.data.eval_tokens,
        replay_blocks_per_step=cfg.n_replay_per_step, replay_current_task=cfg.buffer.replay_current_task,
    )
    trainer = Trainer(cfg, sequence, len(prepared.tokenizer), Path(tempfile.mkdtemp(prefix=f"{name}-", dir=runs_dir)))
    trainer.position.task_index = REPLAY_TASK
    return trainer


def enable_checkpointing(model: torch.nn.Module) -> None:
    """Activation checkpointing switched on exactly as `Trainer.__init__` does it."""
    enable = getattr(model, "activation_checkpointing_enable", None)
    if enable is not None:
        enable(activation_checkpointing_kwargs={"use_reentrant": False})
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})


def resident_bytes(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> int:
    """GPU bytes a variant holds between steps: its weights and its AdamW state (gradients are freed)."""
    tensors = list(model.parameters())
    tensors += [v for state in optimizer.state.values() for v in state.values() if torch.is_tensor(v)]
    return sum(t.numel() * t.element_size() for t in tensors if t.device.type == "cuda")


# ------------------------------------------------------------------------------------------ variants
class PlainLoop:
    """The minimal loop: numpy block reads, autocast forward, cross-entropy, backward, clip, step, zero_grad."""

    def __init__(self, bench: Bench, cfg: RunConfig, tokens: np.ndarray, model: torch.nn.Module,
                 train_model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> None:
        self.bench, self.model, self.train_model, self.optimizer = bench, model, train_model, optimizer
        self.T, self.B, self.clip = cfg.model.seq_len, cfg.optim.batch_size, cfg.optim.grad_clip
        self.accum = cfg.optim.grad_accum
        self.tokens = tokens
        self.n_blocks = (len(tokens) - 1) // self.T
        self.arange = np.arange(self.T + 1)
        self.rng = np.random.default_rng(cfg.seed)
        self.data_wait_s = 0.0

    @classmethod
    def own(cls, bench: Bench, cfg: RunConfig, tokens: np.ndarray, vocab: int) -> PlainLoop:
        """A plain loop with its own model and optimizer, built with the trainer's calls and seed."""
        torch.manual_seed(cfg.seed)
        model = build_model(cfg.model, vocab).to(bench.device)
        if cfg.activation_checkpointing:
            enable_checkpointing(model)
        model.train()
        train_model = torch.compile(model) if cfg.compile else model
        return cls(bench, cfg, tokens, model, train_model, build_optimizer(model, cfg.optim))

    def run(self, n: int) -> None:
        for _ in range(n):
            started = time.perf_counter()
            ids = self.rng.integers(0, self.n_blocks, size=self.B)  # [B]
            blocks = self.tokens[ids[:, None] * self.T + self.arange]  # [B, T+1]
            batch = torch.from_numpy(blocks.astype(np.int64))  # [B, T+1]
            if self.bench.cuda:
                batch = batch.pin_memory().to(self.bench.device, non_blocking=True)
            self.data_wait_s += time.perf_counter() - started
            for micro in batch.chunk(self.accum):  # [B/accum, T+1] each
                with self.bench.autocast():
                    logits = self.train_model(input_ids=micro[:, :-1]).logits  # [b, T, V]
                    loss = F.cross_entropy(logits.float().flatten(0, 1), micro[:, 1:].flatten())
                (loss / self.accum).backward()
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.clip)
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)


class TrainerLoop:
    """`n` calls of `Trainer.train_step` on task 3, advancing the position as fit() does."""

    def __init__(self, trainer: Trainer) -> None:
        self.trainer, self.task = trainer, trainer.sequence.tasks[REPLAY_TASK]

    @property
    def data_wait_s(self) -> float:
        return self.trainer.data_wait_s

    def run(self, n: int) -> None:
        pos = self.trainer.position
        for _ in range(n):
            self.trainer.train_step(self.task)
            pos.step, pos.task_step = pos.step + 1, pos.task_step + 1


@dataclass
class Variant:
    name: str
    loop: PlainLoop | TrainerLoop
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    rows: str  # "new + replay" sequences per step


def timed(bench: Bench, fn: Callable[[], object]) -> float:
    """Wall seconds of `fn()`, including the GPU work it queued."""
    bench.sync()
    started = time.perf_counter()
    fn()
    bench.sync()
    return time.perf_counter() - started


def time_interpolation(bench: Bench, reptile: Reptile) -> float:
    """Seconds of one forced interpolation (maybe_step exactly k steps after the anchor)."""
    step = reptile.anchor_step + reptile.cfg.k
    done = []
    seconds = timed(bench, lambda: done.append(reptile.maybe_step(step)))
    assert done == [True], "the Reptile interpolation did not run"
    return seconds


# ------------------------------------------------------------------------------------------ measure
def bench_model(bench: Bench, model: str, prepared: PreparedData, data: DataConfig, runs_dir: Path) -> dict:
    """Warm-up, then `bench.rounds` interleaved rounds of the three variants and the Reptile timings."""
    vocab = len(prepared.tokenizer)
    cfg0 = run_config(bench, model, 0.0, data, runs_dir)
    cfg_r = run_config(bench, model, bench.alpha, data, runs_dir)
    log(f"{model}: building the trainers ({bench.device}, {bench.precision}) ...")
    trainer0 = make_trainer(cfg0, prepared, runs_dir, f"{model}-alpha0")
    trainer_r = make_trainer(cfg_r, prepared, runs_dir, f"{model}-alpha{bench.alpha}")
    # The middle of a run: the buffer holds all of tasks 1 and 2, training is on task 3.
    for index in range(REPLAY_TASK):
        trainer_r.buffer.add(index, np.arange(trainer_r.sequence.tasks[index].stream.n_blocks))
    tokens = prepared.shards[REPLAY_TASK].tokens("train")
    plain = (PlainLoop(bench, cfg0, tokens, trainer0.model, trainer0.train_model, trainer0.optimizer)
             if bench.plain_model == "shared" else PlainLoop.own(bench, cfg0, tokens, vocab))
    variants = [
        Variant("plain", plain, plain.model, plain.optimizer, f"{bench.batch} + 0"),
        Variant(TRAINER0, TrainerLoop(trainer0), trainer0.model, trainer0.optimizer, f"{bench.batch} + 0"),
        Variant(f"trainer alpha={bench.alpha:g}", TrainerLoop(trainer_r), trainer_r.model, trainer_r.optimizer,
                f"{cfg_r.n_new_per_step} + {cfg_r.n_replay_per_step}"),
    ]
    anchors = ["cpu"] + ([str(bench.device)] if bench.cuda else [])
    reptiles = {a: Reptile(ReptileConfig(k=REPTILE_K[0], eps=0.1, anchor_device=a), trainer0.model.parameters())
                for a in anchors}
    for reptile in reptiles.values():
        reptile.reset_anchor(0)

    log(f"{model}: warm-up, {bench.warmup} steps per variant ...")
    for v in variants:
        timed(bench, lambda: v.loop.run(bench.warmup))
    for reptile in reptiles.values():
        time_interpolation(bench, reptile)
    resident = {v.name: resident_bytes(v.model, v.optimizer) for v in variants}

    res = {v.name: {"seconds": [], "data_wait": [], "peak_bytes": []} for v in variants}
    reptile_s = {a: [] for a in anchors}
    for r in range(bench.rounds):
        log(f"{model}: round {r + 1}/{bench.rounds}")
        for v in rotated(variants, r):  # each variant first, second and third alike
            if bench.cuda:
                base = torch.cuda.memory_allocated(bench.device)
                torch.cuda.reset_peak_memory_stats(bench.device)
            w0 = v.loop.data_wait_s
            res[v.name]["seconds"].append(timed(bench, lambda: v.loop.run(bench.steps)))
            res[v.name]["data_wait"].append(v.loop.data_wait_s - w0)
            if bench.cuda:
                # All variants live in this process: count this one's own weights and Adam state plus
                # what its steps allocated on top of everything resident, i.e. its peak if run alone.
                extra = torch.cuda.max_memory_allocated(bench.device) - base
                res[v.name]["peak_bytes"].append(resident[v.name] + extra)
            if v.name == TRAINER0:
                for anchor, reptile in reptiles.items():
                    reptile_s[anchor].append(med([time_interpolation(bench, reptile)
                                                  for _ in range(bench.reptile_reps)]))
    rates = estimate_flops(trainer0.n_params, trainer0.n_params_nonembedding, cfg0.model.n_layer,
                           cfg0.model.seq_len, cfg0.model.d_model, vocab)
    peak, source = device_peak_flops(bench.device, bench.precision, bench.peak_flops)
    result = {
        "model": model, "n_params": trainer0.n_params, "n_params_nonembedding": trainer0.n_params_nonembedding,
        "vocab": vocab, "seq_len": cfg0.model.seq_len, "batch": bench.batch, "grad_accum": bench.grad_accum,
        "steps": bench.steps, "rounds": bench.rounds, "warmup": bench.warmup,
        "tokens_per_round": bench.steps * bench.batch * cfg0.model.seq_len,
        "flops_per_token": rates.train_per_token, "peak_flops": peak, "peak_source": source,
        "buffer_blocks": len(trainer_r.buffer), "rows": {v.name: v.rows for v in variants},
        "variants": res, "reptile": reptile_s,
    }
    for trainer in (trainer0, trainer_r):
        trainer.buffer.close()
    return result  # the models, optimizers and anchors die with this frame (see `free_memory`)


def free_memory(bench: Bench) -> None:
    """Collect the last model's cycles and hand its cached blocks back, so the next model starts from an empty GPU."""
    gc.collect()
    if bench.cuda:
        torch.cuda.empty_cache()


# ------------------------------------------------------------------------------------------ tables
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


# ------------------------------------------------------------------------------------------ main
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--models", nargs="+", default=None,
                        help="model presets (default: 560m 99m on cuda, cpu-2m on cpu)")
    parser.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda or cuda:N")
    parser.add_argument("--precision", choices=["bf16", "fp32"], default=None,
                        help="default: bf16 on cuda, fp32 on cpu (bf16 is refused on cpu)")
    parser.add_argument("--batch", type=int, default=8,
                        help="sequences per optimizer step (8 x 2048 tokens of 560m fit an 80 GB H100)")
    parser.add_argument("--grad-accum", type=int, default=1, help="micro-batches per optimizer step")
    parser.add_argument("--seq-len", type=int, default=None, help="override the presets' seq_len")
    parser.add_argument("--vocab", type=int, default=None,
                        help="vocabulary of the synthetic data (default: the preset's, 50304 or 4096 for cpu-*)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the training model")
    parser.add_argument("--activation-checkpointing", action="store_true",
                        help="recompute activations in the backward pass (lowers MFU: recomputing is not model FLOPs)")
    parser.add_argument("--alpha", type=float, default=0.5, help="replay ratio of the replay variant")
    parser.add_argument("--prefetch", action="store_true", help="buffer.prefetch on for the replay variant")
    parser.add_argument("--plain-model", choices=["shared", "own"], default="shared",
                        help="plain loop on the alpha=0 trainer's model and optimizer, or on its own copy")
    parser.add_argument("--rounds", type=int, default=6, help="interleaved rounds (a multiple of 3 rotates evenly)")
    parser.add_argument("--steps", type=int, default=None, help="steps per variant and round (default 10 cuda, 2 cpu)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps per variant (default 3 cuda, 1 cpu)")
    parser.add_argument("--reptile-reps", type=int, default=1, help="interpolations timed per anchor and round")
    parser.add_argument("--peak-flops", type=float, default=None, help="peak FLOP/s of the device for MFU")
    parser.add_argument("--task-tokens", type=int, default=None,
                        help="training tokens per synthetic task (default 16M on cuda, 2M on cpu)")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="where the synthetic data go (kept and reused); default a temporary directory")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--json", type=Path, help="also write all raw timings to this JSON file")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    cuda = device.type == "cuda"
    models = args.models or (["560m", "99m"] if cuda else ["cpu-2m"])
    bench = Bench(
        device=device, precision=args.precision or ("bf16" if cuda else "fp32"), batch=args.batch,
        grad_accum=args.grad_accum, seq_len=args.seq_len, compile=args.compile,
        activation_checkpointing=args.activation_checkpointing, alpha=args.alpha, prefetch=args.prefetch,
        plain_model=args.plain_model, warmup=args.warmup if args.warmup is not None else (3 if cuda else 1),
        steps=args.steps or (10 if cuda else 2), rounds=args.rounds, reptile_reps=args.reptile_reps,
        peak_flops=args.peak_flops,
    )
    task_tokens = args.task_tokens or (16_000_000 if cuda else 2_000_000)
    seq_lens = [bench.seq_len or get_preset(m).seq_len for m in models]
    val_tokens = 2 * (max(seq_lens) + 1)  # the trainers need a held-out span; nothing is evaluated here
    if task_tokens < 4 * bench.batch * (max(seq_lens) + 1):
        raise SystemExit(f"--task-tokens {task_tokens:,} holds fewer than 4 batches of "
                         f"{max(seq_lens) + 1}-token blocks")

    info = machine_info()
    scratch = Path(tempfile.mkdtemp(prefix="mer-bench-gpu-"))
    data_root = args.data_dir.expanduser() if args.data_dir else scratch / "data"
    (scratch / "runs").mkdir()
    results = []
    try:
        prepared_by_vocab: dict[int, tuple[DataConfig, PreparedData]] = {}
        for model in models:
            vocab = args.vocab or PRESET_VOCAB[get_preset(model).name]  # get_preset refuses unknown names
            if vocab not in prepared_by_vocab:
                log(f"writing {N_TASKS} synthetic tasks of {task_tokens:,} tokens at vocab {vocab} in {data_root} ...")
                data = synthetic_data_config(data_root, vocab, N_TASKS, task_tokens, val_tokens)
                prepared_by_vocab[vocab] = (data, prepare_data(data))
            data, prepared = prepared_by_vocab[vocab]
            results.append(bench_model(bench, model, prepared, data, scratch / "runs"))
            free_memory(bench)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    info["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]

    shown = " ".join(sys.argv[1:] if argv is None else argv)
    print(f"## Single-GPU benchmarks (python benchmarks/bench_gpu.py {shown})\n".replace(" )", ")"))
    print(format_machine(info, device_line(bench, results)) + "\n")
    options = (f"batch {bench.batch} / grad_accum {bench.grad_accum}, {bench.precision}, compile {bench.compile}, "
               f"activation checkpointing {bench.activation_checkpointing}, plain model {bench.plain_model}, "
               f"buffer prefetch {bench.prefetch}; {bench.rounds} rounds x {bench.steps} steps after "
               f"{bench.warmup} warm-up steps; data: {N_TASKS} tasks x {task_tokens:,} random tokens")
    print(f"### Throughput per variant, median (min-max) over interleaved rounds ({options})\n")
    print(table_variants(results) + "\n")
    print("### Targets: toolkit overhead, replay cost per trained token, MFU\n")
    print(table_targets(results) + "\n")
    print("### Reptile interpolation (eps=0.1) as a share of k trainer steps\n")
    print(table_reptile(results) + "\n")
    if args.json:
        args.json.write_text(json.dumps({"machine": info, "device": device_line(bench, results).strip(),
                                         "results": results, "args": {k: str(v) for k, v in vars(args).items()}},
                                        indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
