"""Write synthetic run directories exactly as docs/run_directory.md specifies, from a known truth.

The trainer does not exist yet, so the analysis is tested on runs whose losses follow known laws:

- no-replay runs (alpha=0, Reptile off) of model size N: retained loss R(6N) and learned loss
  P(6N), with R(C) = 2.3 + 250 C^-0.28 and P(C) = 2.0 + 150 C^-0.30 (C = FLOPs per new token);
- a replay/Reptile run whose FLOPs per new token are c_used: retained R(M c_used) and learned
  P(M' c_used), where M, M' are the TRUE compute-equivalent multipliers the analysis must recover.

Per-task curves are piecewise monotone: a task's loss falls from L0 to L_after(j) while it is
trained and then rises linearly to L_end(j) by the end, so L_after, L_end and the forgetting of
every task are known in closed form and summary.json is written from that truth, not from
`mer.evaluation.metrics` (so agreement between the two is a real check).

Runs use a budget in optimizer steps (the same steps for every alpha, so replay runs see fewer new
tokens); FLOPs per new token, the x of every fit, is 6N/(1-alpha) either way.

Every run is scored, by default, on the same evaluation: summary.json carries the fingerprint
`mer.evaluation.windows` computes for fixed synthetic held-out spans and `eval.context` = SEQ_LEN. A Spec with
another `eval_context` gets another fingerprint; `eval_context=None` writes none (a run from before it).
"""

from __future__ import annotations

import json
import math
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from mer.evaluation.windows import eval_fingerprint, fingerprint_id

TASKS = ("en", "fr", "de")
L0 = 8.0  # loss of a task before it is trained
STEPS_PER_TASK = 20
EVAL_EVERY = 5
BATCH = 8
SEQ_LEN = 64
EVAL_TOKENS = 1024  # held-out tokens per task (synthetic ids: the fingerprint only hashes them)
NOISE = 0.003  # multiplicative noise (log sd) on every run's learned and retained loss

RETAINED = {"E": 2.3, "A": 250.0, "b": 0.28}
LEARNED = {"E": 2.0, "A": 150.0, "b": 0.30}
MODELS = {"m1": 2e6, "m2": 1e7, "m3": 5e7, "m4": 2.5e8, "m5": 1e9}
REPLAY_MODEL = "m3"
RETAINED_MULT = {0.0: 1.0, 0.25: 1.6, 0.5: 0.8}
LEARNED_MULT = {0.0: 1.0, 0.25: 0.7, 0.5: 0.45}
REPTILE_MULT = {(5, 0.1): 1.3, (10, 0.1): 1.2, (5, 0.5): 1.1}  # retained-loss bonus of Reptile


def power_law(c: float, p: dict[str, float]) -> float:
    return p["E"] + p["A"] * c ** (-p["b"])


@dataclass(frozen=True)
class Spec:
    """One synthetic run."""

    model: str
    alpha: float = 0.0
    k: int = 0
    eps: float = 1.0
    seed: int = 0
    status: str = "completed"
    stop_at_step: int | None = None  # cut the log here (failed / running runs)
    eval_context: int | None = SEQ_LEN  # eval.context of the fingerprint; None: no fingerprint (an old run)
    alignment: bool = False  # eval.grad_alignment: every evaluation from task 1 on records `true_cosine(spec)`
    commit: str | None = None  # the git commit summary.json's provenance records (None: no provenance, an old run)
    model_name: str | None = None  # the config's model.name (None: `model`); the size is always MODELS[model]
    shape: tuple[int, int, int, int] | None = None  # (n_layer, d_model, n_head, d_ff) in the config; None: name only
    losses: tuple[float, float] | None = None  # (learned, retained) before noise instead of the laws (dominance patterns)

    @property
    def name(self) -> str:
        return f"alpha={self.alpha},eps={self.eps},k={self.k},model={self.model},seed={self.seed}"


def true_cosine(spec: Spec) -> float:
    """The gradient cosine of every earlier task with the current one in a run with `alignment`: rises with
    alpha, 0.2 more with Reptile on."""
    return -0.3 + 0.8 * spec.alpha + (0.2 if spec.k > 0 and spec.eps < 1 else 0.0)


def flops_per_new_token(spec: Spec) -> float:
    n = MODELS[spec.model]
    new = round((1 - spec.alpha) * BATCH)
    reptile_per_step = 3 * n / spec.k if spec.k > 0 and spec.eps < 1 else 0.0
    return 6 * n * BATCH / new + reptile_per_step / (new * SEQ_LEN)


def true_losses(spec: Spec) -> tuple[float, float]:
    """(learned, retained) loss of a run before noise."""
    if spec.losses is not None:
        return spec.losses
    c = flops_per_new_token(spec)
    reptile = REPTILE_MULT.get((spec.k, spec.eps), 1.0) if spec.k > 0 and spec.eps < 1 else 1.0
    retained = power_law(RETAINED_MULT[spec.alpha] * reptile * c, RETAINED)
    learned = power_law(LEARNED_MULT[spec.alpha] * (0.95 if reptile != 1.0 else 1.0) * c, LEARNED)
    return learned, retained


def per_task_targets(spec: Spec) -> tuple[np.ndarray, np.ndarray]:
    """L_after and L_end per task, with means equal to the (noisy) learned and retained loss."""
    learned, retained = true_losses(spec)
    rng = np.random.default_rng(zlib.crc32(spec.name.encode()))
    learned *= math.exp(rng.normal(0, NOISE))
    retained *= math.exp(rng.normal(0, NOISE))
    t = len(TASKS)
    after = learned * (1 + np.array([0.02, 0.0, -0.02]))
    end = np.empty(t)
    end[-1] = after[-1]
    end[:-1] = (t * retained - end[-1]) / (t - 1) * (1 + np.array([0.01, -0.01]))
    assert np.all(end >= after - 1e-12), f"synthetic truth has negative forgetting for {spec}"
    return after, end


def loss_at(j: int, t: int, p: float, after: np.ndarray, end: np.ndarray) -> float:
    """Loss of task j at progress p in [0, 1] through training task t."""
    if t < j:
        return L0
    if t == j:
        return L0 + (after[j] - L0) * (1 - (1 - p) ** 2)
    q = ((t - j - 1) + p) / (len(TASKS) - 1 - j)
    return after[j] + (end[j] - after[j]) * q


def model_section(spec: Spec) -> dict:
    """The config's model section: the name, and the architecture fields when the spec has a shape."""
    section: dict = {"name": spec.model_name or spec.model}
    if spec.shape is not None:
        n_layer, d_model, n_head, d_ff = spec.shape
        section.update(n_layer=n_layer, d_model=d_model, n_head=n_head, n_kv_head=None, d_ff=d_ff,
                       tie_embeddings=False, seq_len=SEQ_LEN)
    return section


VOCAB = 4096  # the vocabulary of a spec with a shape


def parameter_counts(spec: Spec) -> dict[str, int]:
    """summary.json's counts: MODELS[model] (80% non-embedding), or, for a spec with a shape, the counts of that
    shape at `VOCAB` (mer.model.llama.estimate_parameters: full attention, untied embeddings)."""
    if spec.shape is None:
        n = MODELS[spec.model]
        return {"n_params": int(n), "n_params_nonembedding": int(0.8 * n)}
    n_layer, d, _, d_ff = spec.shape
    non_embedding = n_layer * (4 * d * d + 3 * d * d_ff + 2 * d) + d
    return {"n_params": non_embedding + 2 * VOCAB * d, "n_params_nonembedding": non_embedding}


def write_run(root: Path, spec: Spec) -> Path:
    """Write config.yaml, metrics.jsonl and summary.json of one run under root/<name>."""
    run = root / spec.name
    run.mkdir(parents=True, exist_ok=True)
    config = {
        "alpha": spec.alpha, "k": spec.k, "eps": spec.eps, "seed": spec.seed,
        "model": model_section(spec), "data": {"tasks": [{"name": t, "language": t} for t in TASKS]},
        "eval_every": EVAL_EVERY,
    }
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    n = MODELS[spec.model]
    after, end = per_task_targets(spec)
    new, rep = round((1 - spec.alpha) * BATCH), BATCH - round((1 - spec.alpha) * BATCH)
    reptile = spec.k > 0 and spec.eps < 1
    lines, n_evals = [], 0
    total = STEPS_PER_TASK * len(TASKS)
    last = total if spec.stop_at_step is None else spec.stop_at_step

    def counters(step: int, task: int) -> dict:
        tn, tr = step * new * SEQ_LEN, step * rep * SEQ_LEN
        fr = 3 * n * (step // spec.k) if reptile else 0.0
        return {
            "step": step, "task": TASKS[task], "task_index": task, "tokens_new": tn, "tokens_replay": tr,
            "flops_new": 6 * n * tn, "flops_replay": 6 * n * tr, "flops_eval": 2 * n * 1024 * len(TASKS) * n_evals,
            "flops_reptile": fr, "flops_train": 6 * n * (tn + tr) + fr,
            "lr": 1e-3 * 0.5 * (1 + math.cos(math.pi * step / total)), "wall_time": 0.1 * step,
        }

    for step in range(0, last + 1, EVAL_EVERY):
        task = min(max(step - 1, 0) // STEPS_PER_TASK, len(TASKS) - 1)
        p = (step - task * STEPS_PER_TASK) / STEPS_PER_TASK
        is_boundary = step > 0 and step % STEPS_PER_TASK == 0
        if step > 0:
            lines.append({"event": "train", **counters(step, task), "loss": loss_at(task, task, p, after, end), "tokens_per_s": 1e4})
        n_evals += 1
        val = {name: loss_at(j, task, p, after, end) for j, name in enumerate(TASKS)}
        record = {"event": "eval", **counters(step, task), "val_loss": val, "boundary": is_boundary}
        if spec.alignment:  # the fields mer.evaluation.grad_alignment writes
            record.update(grad_cosine={t: true_cosine(spec) for t in TASKS[:task]},
                          grad_cosine_mean=true_cosine(spec) if task else None,
                          grad_norm={t: 1.0 for t in TASKS[: task + 1]})
        lines.append(record)
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))

    done = spec.status == "completed"
    matrix = [[loss_at(j, i, 1.0, after, end) for j in range(len(TASKS))] for i in range(len(TASKS))]
    forgetting_per_task = {t: float(end[j] - after[j]) for j, t in enumerate(TASKS)}
    summary = {
        "status": spec.status,
        "error": "RuntimeError: CUDA out of memory" if spec.status == "failed" else None,
        "run_name": spec.name,
        "tasks": list(TASKS),
        **parameter_counts(spec),
        "metrics": {
            "learned_loss": float(after.mean()),
            "retained_loss": float(end.mean()),
            "forgetting": float(np.mean((end - after)[:-1])),
            "backward_transfer": float(np.mean((after - end)[:-1])),
            "forgetting_per_task": forgetting_per_task,
        } if done else None,
        "loss_matrix": matrix if done else None,
        "totals": {k: v for k, v in lines[-1].items() if k.startswith(("tokens_", "flops_"))} | {"steps": last},
        "wall_time_s": 0.1 * last,
        "versions": {"python": "3.11", "torch": "none", "transformers": "none", "mer": "0.1.0"},
    }
    if spec.eval_context is not None:
        spans = {t: np.arange(j, j + EVAL_TOKENS) for j, t in enumerate(TASKS)}
        fingerprint = eval_fingerprint("synthetic-tokenizer", spec.eval_context, spec.eval_context, spans)
        summary.update(eval_fingerprint=fingerprint, eval_fingerprint_id=fingerprint_id(fingerprint))
    if spec.commit is not None:  # the fields mer.rundir.provenance writes
        attempt = {"git_commit": spec.commit, "git_dirty": False, "mer_version": "0.1.0",
                   "command": f"python -m mer.run alpha={spec.alpha} seed={spec.seed}", "cwd": "/tmp",
                   "host": "synthetic", "started_at": "2026-01-01T00:00:00+00:00"}
        summary["provenance"] = {**attempt, "attempts": [attempt]}
    (run / "summary.json").write_text(json.dumps(summary))
    return run


def sweep_specs() -> list[Spec]:
    """The standard synthetic sweep: a no-replay family over 5 sizes and a replay/Reptile grid on m3."""
    specs = [Spec(model=m, seed=s) for m in MODELS for s in range(3)]
    for s in range(3):
        for alpha in (0.25, 0.5):
            specs.append(Spec(model=REPLAY_MODEL, alpha=alpha, seed=s))
        for alpha in (0.0, 0.25, 0.5):
            specs.append(Spec(model=REPLAY_MODEL, alpha=alpha, k=5, eps=0.1, seed=s))
    for alpha in (0.0, 0.25, 0.5):
        specs.append(Spec(model=REPLAY_MODEL, alpha=alpha, k=10, eps=0.1, seed=0))
        specs.append(Spec(model=REPLAY_MODEL, alpha=alpha, k=5, eps=0.5, seed=0))
    specs.append(Spec(model="m2", alpha=0.25, seed=7, status="failed", stop_at_step=27))
    specs.append(Spec(model="m4", alpha=0.5, seed=7, status="running", stop_at_step=45))
    return specs


def write_sweep(root: Path, specs: list[Spec] | None = None) -> list[Path]:
    return [write_run(root, s) for s in (specs if specs is not None else sweep_specs())]
