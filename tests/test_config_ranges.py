"""Every numeric field of every config dataclass has its range checked in `__post_init__`.

The table below holds, per field, values out of its range; `test_every_numeric_field_is_in_the_table` fails when
a config gains an int/float field without a row here, so a new knob cannot skip its check.
"""

from __future__ import annotations

import dataclasses
import math
import typing

import pytest

from mer.config.run_config import EvalConfig, RunConfig
from mer.data.config import DataConfig, TaskConfig, TokenizerConfig
from mer.model.llama import ModelConfig
from mer.optim.schedule import OptimConfig
from mer.replay.buffer import BufferConfig

SCHEMAS = (RunConfig, EvalConfig, ModelConfig, OptimConfig, BufferConfig, DataConfig, TaskConfig, TokenizerConfig)

# (schema, field) -> values out of range (each must be refused with a message naming the field)
OUT_OF_RANGE: dict[tuple[type, str], list] = {
    (RunConfig, "alpha"): [-0.01, 1.0, math.nan, math.inf],
    (RunConfig, "k"): [-1],
    (RunConfig, "eps"): [0.0, -0.5, 1.01, math.nan],
    (RunConfig, "seed"): [-1, 2**63],
    (RunConfig, "checkpoint_every"): [0, -3],
    (RunConfig, "log_every"): [0],
    (RunConfig, "threads"): [0, -2],
    (RunConfig, "peak_flops"): [0.0, -1e12, math.inf, math.nan],
    (RunConfig, "plan_mfu"): [0.0, -0.1, 1.5, math.nan],
    (RunConfig, "max_hours"): [0.0, -1.0, math.nan],
    (RunConfig, "plan_world_size"): [0, -1],
    (EvalConfig, "every"): [0],
    (EvalConfig, "batch_size"): [0],
    (EvalConfig, "context"): [0],
    (EvalConfig, "stride"): [0],
    (EvalConfig, "downstream_limit"): [0],
    (EvalConfig, "grad_alignment_windows"): [0, -2],
    (ModelConfig, "n_layer"): [0, -1],
    (ModelConfig, "d_model"): [0],
    (ModelConfig, "n_head"): [0, 3],
    (ModelConfig, "n_kv_head"): [0, 3],
    (ModelConfig, "d_ff"): [0],
    (ModelConfig, "seq_len"): [0],
    (ModelConfig, "rope_theta"): [0.0, math.inf, math.nan],
    (ModelConfig, "init_std"): [0.0, -0.02, math.inf],
    (ModelConfig, "norm_eps"): [0.0, math.inf],
    (OptimConfig, "lr"): [0.0, -1e-3, math.inf, math.nan],
    (OptimConfig, "min_lr"): [-1e-5, 1.0],
    (OptimConfig, "betas"): [(0.9, 1.0), (-0.1, 0.95), (0.9,)],
    (OptimConfig, "adam_eps"): [0.0, math.inf],
    (OptimConfig, "weight_decay"): [-0.1, math.inf],
    (OptimConfig, "grad_clip"): [-1.0, math.inf, math.nan],
    (OptimConfig, "warmup_fraction"): [-0.01, 1.0],
    (OptimConfig, "batch_size"): [0, -8],
    (OptimConfig, "grad_accum"): [0, 3],
    (BufferConfig, "capacity"): [0, -5],
    (DataConfig, "budget_tokens"): [0],
    (DataConfig, "budget_steps"): [0],
    (DataConfig, "eval_tokens"): [1, 0],
    (DataConfig, "min_val_tokens"): [1, 0, -4096],
    (TaskConfig, "val_fraction"): [0.0, 0.5, math.nan],
    (TaskConfig, "max_train_documents"): [0],
    (TaskConfig, "budget_tokens"): [0],
    (TaskConfig, "max_packages"): [0, -1],
    (TokenizerConfig, "vocab_size"): [256, 2**32 + 1],
    (TokenizerConfig, "train_chars_per_task"): [9_999],
    (TokenizerConfig, "min_frequency"): [0],
}


def _is_numeric(hint) -> bool:
    args = [a for a in typing.get_args(hint) if a is not type(None)] or [hint]
    return any(a in (int, float) or typing.get_origin(a) is tuple for a in args) and bool not in args


def test_every_numeric_field_is_in_the_table():
    numeric = {(schema, name) for schema in SCHEMAS for name, hint in typing.get_type_hints(schema).items()
               if _is_numeric(hint) and name in {f.name for f in dataclasses.fields(schema)}}
    assert numeric - set(OUT_OF_RANGE) == set(), "numeric fields without a range test"


def _build(schema: type, name: str, value):
    """The schema with one field set, the others valid (a budget in steps when budget_tokens is the field)."""
    if schema is DataConfig and name == "budget_steps":
        return DataConfig(budget_tokens=None, budget_steps=value)
    if schema is BufferConfig and name == "capacity":
        return BufferConfig(policy="reservoir", capacity=value)
    if schema is EvalConfig and name == "stride":
        return EvalConfig(stride=value)
    if schema is TokenizerConfig and name == "vocab_size":
        return TokenizerConfig(vocab_size=value)
    if schema is TaskConfig and name == "max_packages":  # a Debian setting: on another source it is refused anyway
        return TaskConfig(source="debian", max_packages=value)
    return schema(**{name: value})


@pytest.mark.parametrize(("schema", "name", "value"),
                         [(s, n, v) for (s, n), values in OUT_OF_RANGE.items() for v in values],
                         ids=[f"{s.__name__}.{n}={v!r}" for (s, n), values in OUT_OF_RANGE.items() for v in values])
def test_out_of_range_is_refused_naming_the_field(schema, name, value):
    with pytest.raises(ValueError) as refusal:
        _build(schema, name, value)
    assert name in str(refusal.value), str(refusal.value)


def test_a_buffer_capacity_with_policy_all_is_refused_as_ineffective():
    with pytest.raises(ValueError, match="buffer.capacity=64 has no effect with buffer.policy=all"):
        RunConfig(buffer=BufferConfig(policy="all", capacity=64))
    RunConfig(buffer=BufferConfig(policy="reservoir", capacity=64))  # where it takes effect it is accepted


def test_the_edges_of_each_range_are_accepted():
    RunConfig(alpha=0.0, eps=1.0, seed=2**63 - 1, k=0, threads=1, peak_flops=1.0)
    OptimConfig(min_lr=0.0, weight_decay=0.0, grad_clip=0.0, warmup_fraction=0.0, betas=(0.0, 0.999))
    TokenizerConfig(vocab_size=257)
    DataConfig(eval_tokens=2, min_val_tokens=2)
    TaskConfig(source="debian", max_packages=1)
