"""One model of bench_gpu.py measured: its three variants built, warmed up and timed in interleaved
rounds, with peak GPU memory and the Reptile interpolation on each anchor device; the raw numbers
come back as a dict (the tables and --json read it)."""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from gpu_loops import PlainLoop, TrainerLoop
from gpu_setup import REPLAY_TASK, REPTILE_K, TRAINER0, Bench, make_trainer, run_config
from rounds import log, med, rotated

from mer.compute.flops import estimate_flops
from mer.compute.mfu import device_peak_flops
from mer.data.config import DataConfig
from mer.data.pipeline import PreparedData
from mer.optim.reptile import Reptile, ReptileConfig


def resident_bytes(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> int:
    """GPU bytes a variant holds between steps: its weights and its AdamW state (gradients are freed)."""
    tensors = list(model.parameters())
    tensors += [v for state in optimizer.state.values() for v in state.values() if torch.is_tensor(v)]
    return sum(t.numel() * t.element_size() for t in tensors if t.device.type == "cuda")


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
