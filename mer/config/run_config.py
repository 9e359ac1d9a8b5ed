"""The root config of `python -m mer.run` and Hydra's ConfigStore registration of all schemas.

Only this module and the entry points import hydra/omegaconf; everything else receives plain
dataclasses (`to_dataclass`), whose `__post_init__` checks all run before any work starts.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from mer.compute.budget import min_budget_tokens_for, reptile_fires, reptile_refusal, steps_per_task
from mer.config.run_name import run_name_problem
from mer.data.config import DataConfig
from mer.model.llama import PRESETS, ModelConfig
from mer.optim.schedule import OptimConfig
from mer.parallel.sharding import PARALLEL_CHOICES
from mer.replay.config import BufferConfig
from mer.replay.policies import POLICIES
from mer.trackers.config import LoggerConfig, MlflowConfig, TensorBoardConfig, WandbConfig

T = TypeVar("T")
CPU_PAPER_MIN_STEPS = 1000
"""Optimizer steps of every task under `+experiment=cpu_paper` (conf/experiment/cpu_paper.yaml) at alpha=0, its
fewest: a `k` up to this fires there, so a refused `k` names the preset (tests/test_bad_input.py checks the two agree)."""


@dataclass
class EvalConfig:
    """When and how the held-out loss of every task is measured."""

    every: int = 100
    """Evaluate every this many optimizer steps (and always at step 0 and at each task boundary)."""
    batch_size: int = 32
    """Windows per forward pass."""
    context: int | None = None
    """Tokens the model sees per scoring window; null = model.seq_len. At most model.seq_len. Runs compared
    in one analysis must share it (and data.eval_tokens): it is part of the evaluation fingerprint."""
    stride: int | None = None
    """Tokens between consecutive windows, in [1, context]; null = context (disjoint windows). A smaller
    stride gives every scored token at least context - stride tokens of context, at context/stride times the cost."""
    downstream: list[str] = field(default_factory=list)
    """lm-evaluation-harness tasks (or groups) to score the live model on at every task boundary, e.g.
    [bible_cloze]; needs the extra `pip install -e ".[eval]"`. Records go to downstream.jsonl, the tokens forwarded
    count as evaluation FLOPs. Empty (the default): none, and the harness is not imported."""
    downstream_limit: int | None = None
    """At most this many documents per downstream task (the harness' --limit); null: all of them."""
    downstream_include: list[str] = field(default_factory=list)
    """Folders of your own harness task YAML for eval.downstream (the built-in bible_cloze needs none)."""
    grad_alignment: bool = False
    """At every evaluation also compute the gradient of the current task and of every earlier task on fixed
    held-out windows and log their cosine similarities and norms (`mer.evaluation.grad_alignment`); costs a forward and a
    backward of those windows per task, counted as evaluation FLOPs. Not with parallel=fsdp."""
    grad_alignment_windows: int | None = None
    """Windows (of eval.context tokens) per task in the gradient batch of eval.grad_alignment: the first ones of the
    task's evaluation plan, the same at every evaluation (fewer when the held-out span has fewer); null: 8."""

    def __post_init__(self) -> None:
        if self.every < 1:
            raise ValueError(f"eval.every={self.every} must be >= 1")
        if self.batch_size < 1:
            raise ValueError(f"eval.batch_size={self.batch_size} must be >= 1")
        if self.context is not None and self.context < 1:
            raise ValueError(f"eval.context={self.context} must be >= 1, or null for model.seq_len")
        if self.stride is not None and self.stride < 1:
            raise ValueError(f"eval.stride={self.stride} must be >= 1, or null for eval.context")
        if self.context is not None and self.stride is not None and self.stride > self.context:
            raise ValueError(f"eval.stride={self.stride} is larger than eval.context={self.context}: windows would "
                             f"skip tokens; use a stride in [1, {self.context}] or null")
        if any(not isinstance(t, str) or not t.strip() for t in self.downstream):
            raise ValueError(f"eval.downstream={self.downstream!r} must list harness task names, e.g. [bible_cloze]")
        if self.downstream_limit is not None and self.downstream_limit < 1:
            raise ValueError(f"eval.downstream_limit={self.downstream_limit} must be >= 1, or null for every document")
        if not isinstance(self.grad_alignment, bool):
            raise ValueError(f"eval.grad_alignment={self.grad_alignment!r} must be true or false")
        if self.grad_alignment_windows is not None and self.grad_alignment_windows < 1:
            raise ValueError(f"eval.grad_alignment_windows={self.grad_alignment_windows} must be >= 1, or null for 8")
        if self.grad_alignment_windows is not None and not self.grad_alignment:
            raise ValueError(f"eval.grad_alignment_windows={self.grad_alignment_windows} applies to eval.grad_alignment, "
                             "which is false: add eval.grad_alignment=true, or drop the windows setting")
        if self.downstream:
            from mer.evaluation.harness import require_harness

            require_harness(f"eval.downstream={list(self.downstream)}")
        elif self.downstream_limit is not None or self.downstream_include:
            raise ValueError("eval.downstream_limit and eval.downstream_include apply to eval.downstream, which is "
                             "empty: give the tasks, e.g. eval.downstream=[bible_cloze]")

    def windows(self, seq_len: int) -> tuple[int, int]:
        """(context, stride) actually used for a model of `seq_len`; refuses a context the model cannot take."""
        context = seq_len if self.context is None else self.context
        if context > seq_len:
            raise ValueError(f"eval.context={context} is longer than model.seq_len={seq_len}, the longest sequence "
                             f"the model is built for; use eval.context <= {seq_len} (or null for {seq_len})")
        stride = context if self.stride is None else self.stride
        if stride > context:
            raise ValueError(f"eval.stride={stride} is larger than the evaluation context {context} "
                             f"(eval.context={self.context}, model.seq_len={seq_len}); use a stride in [1, {context}]")
        return context, stride


@dataclass
class RunConfig:
    """One training run: the swept MER knobs at the top, the parts in groups."""

    alpha: float = 0.25
    """Replay ratio: fraction of every batch drawn from the replay buffer, in [0, 1)."""
    k: int | None = 0
    """Reptile interval in optimizer steps; 0 or null turns Reptile off."""
    eps: float = 0.1
    """Reptile meta step size in (0, 1]; 1 is a no-op."""
    seed: int = 0
    """Seed of the model initialisation, the data order and the replay draws."""
    model: ModelConfig = field(default_factory=ModelConfig)
    """Model shape (a preset from conf/model/)."""
    data: DataConfig = field(default_factory=DataConfig)
    """Task sequence, budgets and data cache."""
    optim: OptimConfig = field(default_factory=OptimConfig)
    """AdamW, batch size and LR schedule."""
    eval: EvalConfig = field(default_factory=EvalConfig)
    """Evaluation schedule."""
    buffer: BufferConfig = field(default_factory=BufferConfig)
    """Replay buffer policy and storage."""
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    """Experiment trackers that mirror metrics.jsonl, e.g. logger=[tensorboard,mlflow] (docs/trackers.md)."""
    reptile_anchor_device: str = "cpu"
    """Where the Reptile anchor lives ("cpu" keeps accelerator memory free)."""
    reptile_reset_each_task: bool = True
    """Take a fresh Reptile anchor at the start of every task (else only at the start of training)."""
    reptile_at_task_end: bool = False
    """Also interpolate at the end of every task when fewer than k steps have passed since the anchor (the last,
    shorter window), so that every task gets at least one interpolation. Off by default, as in the paper's code."""
    runs_dir: str = "runs"
    """Parent folder of run directories."""
    run_name: str | None = None
    """Run directory name; null derives it from the command-line overrides (never from a timestamp)."""
    checkpoint_every: int = 500
    """Write a checkpoint every this many optimizer steps (also at task boundaries and on SIGTERM/SIGUSR1)."""
    log_every: int = 25
    """Append a train line to metrics.jsonl (and a log line when not on a terminal) every this many steps."""
    device: str = "auto"
    """auto (cuda when available, else cpu), cpu or cuda."""
    threads: int | None = None
    """CPU threads for torch; null keeps torch's default."""
    precision: str = "fp32"
    """fp32, or bf16: bf16 autocast of the forward pass with fp32 weights, gradients, optimizer state and
    Reptile anchor (needs a GPU with native bf16, e.g. A100/H100; refused on CPU)."""
    compile: bool = False
    """torch.compile the model for training (evaluation runs the plain module)."""
    activation_checkpointing: bool = False
    """Recompute each block's activations in the backward pass (less memory, about 1/3 more compute)."""
    parallel: str = "ddp"
    """How the processes of a torchrun / multi-task Slurm job share the model: ddp (each holds all of it) or
    fsdp (parameters, gradients, optimizer state and Reptile anchor sharded over the GPUs: for 1B+ models).
    Ignored with one process."""
    fsdp_on_cpu: bool = False
    """Allow parallel=fsdp on CPU (gloo), which saves no memory there: for checking the sharded path in CI."""
    peak_flops: float | None = None
    """Peak FLOP/s of ONE device for the MFU figure; null takes it from mer.compute.mfu's GPU table (or a measured
    matmul rate on CPU)."""
    export_each_task: bool = False
    """Keep the model of every task boundary as a Hugging Face folder, models/after_<task>/ (save_pretrained,
    safetensors, tokenizer, model card), recorded in summary.json's exported_models (`mer.hf.export`)."""
    plan: bool = False
    """Print what the run (or, with -m, every point of the sweep) would cost, and train nothing (docs/plan.md)."""
    plan_csv: str | None = None
    """Where plan=true writes its CSV: null writes none for one run, <sweep dir>/plan.csv for a sweep."""
    plan_mfu: float = 0.4
    """The MFU assumed for time on a GPU and for the GPU-hours of a plan (stated in its output)."""
    plan_gpu: str | None = None
    """The GPU of the plan's GPU-hours (a name in mer.compute.mfu.GPU_PEAKS, e.g. A100); null: this machine's GPU, else H100."""
    plan_world_size: int | None = None
    """Processes of the ddp/fsdp rows of the plan's memory table; null: this job's, or 8 for a single process."""
    max_hours: float | None = 24.0
    """Refuse a run whose estimated time on this machine exceeds this many hours; null: no limit."""
    allow_oversize: bool = False
    """Start a run even where its estimated memory or time does not fit the device (skips the check of mer.plan.fit)."""

    def __post_init__(self) -> None:
        if not 0.0 <= self.alpha < 1.0:
            raise ValueError(f"alpha={self.alpha} must be in [0, 1): it is the fraction of each batch that is replayed")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or not 0 <= self.seed < 2**63:
            raise ValueError(f"seed={self.seed!r} must be an integer in [0, 2**63), e.g. seed=0")
        if self.k is not None and self.k < 0:
            raise ValueError(f"k={self.k} must be >= 0 (0 or null turns Reptile off)")
        if not 0.0 < self.eps <= 1.0:
            raise ValueError(f"eps={self.eps} must be in (0, 1] (1 leaves the weights unchanged)")
        if self.model.name not in PRESETS and not self.model.name.startswith("custom-") and self.model.init_from is None:
            raise ValueError(f"unknown model size {self.model.name!r}; choose one of {sorted(PRESETS)} "
                             "(model=<name>) or set model.name=custom with explicit shape fields")
        if self.n_new_per_step < 1:
            raise ValueError(
                f"alpha={self.alpha} with optim.batch_size={self.optim.batch_size} leaves "
                f"round((1-alpha)*B)={self.n_new_per_step} new sequences per step; lower alpha or raise the batch size"
            )
        policy = POLICIES[self.buffer.policy]
        if not policy.needs_capacity and self.buffer.capacity is not None:
            raise ValueError(f"buffer.capacity={self.buffer.capacity} has no effect with buffer.policy="
                             f"{self.buffer.policy} (it keeps every block); use buffer=reservoir to cap the buffer, "
                             "or drop buffer.capacity")
        if policy.needs_capacity and self.buffer.capacity < self.optim.batch_size - self.n_new_per_step:
            raise ValueError(f"buffer.capacity={self.buffer.capacity} is smaller than the "
                             f"{self.optim.batch_size - self.n_new_per_step} replayed sequences of one batch")
        policy.check_run(self.buffer, len(self.data.tasks))
        if self.run_name is not None and (problem := run_name_problem(self.run_name)) is not None:
            raise ValueError(problem)
        for name in ("checkpoint_every", "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)} must be >= 1")
        if self.device not in ("auto", "cpu", "cuda") and not self.device.startswith("cuda:"):
            raise ValueError(f"device={self.device!r}; use auto, cpu or cuda[:N]")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"threads={self.threads} must be >= 1 or null")
        cpus = os.cpu_count() or 1
        if self.threads is not None and self.threads > cpus:  # more cannot run at once; 100000 fails to allocate
            raise ValueError(f"threads={self.threads} is more than the {cpus} CPUs of this machine; use at most "
                             f"threads={cpus}, or null for torch's default")
        if self.precision not in ("fp32", "bf16"):
            raise ValueError(f"precision={self.precision!r}: choose fp32 or bf16")
        if self.parallel not in PARALLEL_CHOICES:
            raise ValueError(f"parallel={self.parallel!r}: choose one of {list(PARALLEL_CHOICES)}")
        refusal = self.reptile_refusal()
        if refusal is not None:
            raise ValueError(refusal)
        for name in ("compile", "activation_checkpointing", "fsdp_on_cpu", "reptile_at_task_end",
                     "reptile_reset_each_task", "export_each_task", "plan", "allow_oversize"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name}={getattr(self, name)!r} must be true or false")
        if self.peak_flops is not None and not 0 < self.peak_flops < math.inf:
            raise ValueError(f"peak_flops={self.peak_flops!r} must be > 0 (FLOP/s of one device, e.g. 989e12) or null")
        from mer.config.plan_settings import check_plan_settings

        check_plan_settings(self)
        self.eval.windows(self.model.seq_len)  # refuses eval.context > model.seq_len before any work
        if self.model.init_from is not None:  # the model's tokenizer, unless given; refused if it does not fit
            from mer.model.pretrained import check_tokenizer

            path = check_tokenizer(self.model.init_from, self.data.tokenizer.path)
            # New objects, not an assignment: a DataConfig may be shared with other configs (dataclasses.replace).
            self.data = replace(self.data, tokenizer=replace(self.data.tokenizer, path=path))

    @property
    def n_new_per_step(self) -> int:
        """New sequences per optimizer step: round((1 - alpha) * B) (docs/design.md)."""
        return round((1.0 - self.alpha) * self.optim.batch_size)

    @property
    def n_replay_per_step(self) -> int:
        return self.optim.batch_size - self.n_new_per_step

    @property
    def task_steps(self) -> list[int]:
        """Optimizer steps of every task, from the budgets (`mer.compute.budget.steps_per_task`)."""
        return steps_per_task(self.task_budgets, self.data.budget_steps, self.model.seq_len, self.n_new_per_step,
                              self.n_replay_per_step, self.buffer.replay_current_task)

    @property
    def task_budgets(self) -> list[int | None]:
        """Each task's new-token budget: its own budget_tokens, else data.budget_tokens (None with budget_steps)."""
        return [t.budget_tokens or self.data.budget_tokens for t in self.data.tasks]

    def reptile_refusal(self) -> str | None:
        """Why Reptile with this k would never interpolate (`mer.compute.budget.reptile_refusal`), or None when it fires."""
        steps = self.task_steps
        if reptile_fires(self.k, self.eps, steps, self.reptile_reset_each_task, self.reptile_at_task_end):
            return None  # the fixes below (a bisection for the budget) are only worked out for a refusal
        names = [t.name for t in self.data.tasks]
        shape = (f"model.seq_len={self.model.seq_len} x {self.n_new_per_step} new sequences per step "
                 f"(alpha={self.alpha:g}, optim.batch_size={self.optim.batch_size})")
        if self.data.budget_steps is not None:
            hint = f"data.budget_steps={self.data.budget_steps}"
            need = self.k if self.reptile_reset_each_task else -(-self.k // len(steps))
            fix = f"data.budget_steps>={need}"
        else:
            budgets = sorted({b for b in self.task_budgets if b is not None})
            hint = (f"steps = ceil(budget_tokens / ({shape})) with budget_tokens"
                    + (f"={budgets[0]}" if len(budgets) == 1 else f" in {budgets}"))
            need = min_budget_tokens_for(self.k, len(steps), self.model.seq_len, self.n_new_per_step,
                                         self.n_replay_per_step, self.buffer.replay_current_task,
                                         self.reptile_reset_each_task)
            per_task = any(t.budget_tokens is not None for t in self.data.tasks)
            fix = (f"data.budget_tokens>={need}" + (" for every task (the tasks' own budget_tokens too)"
                                                    if per_task else ""))
        preset = (f"+experiment=cpu_paper (the README's CPU setting of the paper's grid: at least {CPU_PAPER_MIN_STEPS} "
                  "steps in every task)" if self.k <= CPU_PAPER_MIN_STEPS else None)
        return reptile_refusal(self.k, names, steps, self.reptile_reset_each_task, hint, fix, preset)


def register_configs() -> None:
    """Store the schemas so that YAML files in conf/ can extend them (`defaults: [base_<group>]`)."""
    from hydra.core.config_store import ConfigStore

    store = ConfigStore.instance()
    store.store(name="base_config", node=RunConfig)
    store.store(group="data", name="base_data", node=DataConfig)
    store.store(group="model", name="base_model", node=ModelConfig)
    store.store(group="optim", name="base_optim", node=OptimConfig)
    store.store(group="buffer", name="base_buffer", node=BufferConfig)
    store.store(group="eval", name="base_eval", node=EvalConfig)
    # One schema per tracker, each at its own package, so that logger=[tensorboard,mlflow] merges both.
    store.store(group="logger", name="base_tensorboard", node=TensorBoardConfig, package="logger.tensorboard")
    store.store(group="logger", name="base_mlflow", node=MlflowConfig, package="logger.mlflow")
    store.store(group="logger", name="base_wandb", node=WandbConfig, package="logger.wandb")


def to_dataclass(cfg: Any, schema: type[T], prefix: str = "") -> T:
    """Turn a composed DictConfig into its dataclass, running every validation check.

    Keys no field reads (a typo added with `+key=value`) are refused first (`mer.config.strict`); every refusal is a
    ValueError whose message names the key."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    from mer.config.strict import check_known_keys

    check_known_keys(cfg, schema, prefix)  # prefix: where cfg sits in the composed config, for the message
    try:
        obj = OmegaConf.to_object(cfg)
    except OmegaConfBaseException as error:  # e.g. a mandatory value left at ??? ; the message names the key
        raise ValueError(str(error).splitlines()[0] if str(error) else type(error).__name__) from error
    if not isinstance(obj, schema):
        raise TypeError(f"expected a {schema.__name__} config, got {type(obj).__name__}")
    return obj
