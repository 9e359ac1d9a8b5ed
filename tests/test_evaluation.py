"""The held-out evaluation: windows that score every target once, the trainer's losses, the fingerprint."""

from __future__ import annotations

import dataclasses
import hashlib

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from mer_testing import tiny_run_config

from mer.config.run_config import EvalConfig
from mer.data.stream import TaskSequence
from mer.evaluation.windows import eval_fingerprint, fingerprint_id, plan_windows, span_sha256
from mer.model.llama import get_preset
from mer.training.trainer import Trainer

CASES = [(n, context, stride)
         for n in (2, 3, 5, 16, 17, 18, 33, 64, 65, 66, 100, 129, 257, 1000)
         for context in (1, 2, 7, 16, 32, 64)
         for stride in sorted({1, 2, 3, context // 2 or 1, context - 1 or 1, context})
         if stride <= context]


@pytest.mark.parametrize(("n", "context", "stride"), CASES)
def test_every_target_is_scored_exactly_once(n, context, stride):
    plan = plan_windows(n, context, stride)
    scored = np.zeros(n, dtype=int)
    for start, first in zip(plan.starts, plan.first_scored, strict=True):
        assert 0 <= start and start + plan.length + 1 <= n  # inside the span, all windows equally long
        scored[start + 1 + np.arange(first, plan.length)] += 1  # offset j predicts position start + j + 1
    assert scored[0] == 0 and np.all(scored[1:] == 1)
    assert plan.n_scored.sum() == n - 1
    assert plan.length == min(context, n - 1)
    assert plan.starts[0] == 0 and plan.first_scored[0] == 0  # the first window scores all its targets
    assert plan.starts[-1] + plan.length == n - 1  # the last window ends at the span's end
    if n - 1 > context:
        # after the first window: starts `stride` apart (the aligned last one closer), at most `stride`
        # targets scored, each with at least context - stride tokens of context before it
        assert np.all(np.diff(plan.starts)[:-1] == stride) and 1 <= np.diff(plan.starts)[-1] <= stride
        assert np.all(plan.n_scored[1:] <= stride) and np.all(plan.first_scored[1:] >= context - stride)


def test_window_plan_edge_cases_and_refusals():
    short = plan_windows(10, 32, 32)  # a span shorter than context + 1: one short window
    assert short.length == 9 and short.starts.tolist() == [0] and short.n_scored.tolist() == [9]
    exact = plan_windows(33, 32, 32)  # exactly one full window
    assert exact.starts.tolist() == [0] and exact.n_scored.tolist() == [32]
    ragged = plan_windows(40, 32, 32)  # one full window and an aligned one scoring the 7 targets left
    assert ragged.starts.tolist() == [0, 7] and ragged.n_scored.tolist() == [32, 7]
    sliding = plan_windows(41, 16, 8)
    assert sliding.starts.tolist() == [0, 8, 16, 24] and sliding.n_scored.tolist() == [16, 8, 8, 8]
    assert plan_windows(5, 3, 2).positions(slice(None)).tolist() == [[0, 1, 2, 3], [1, 2, 3, 4]]
    with pytest.raises(ValueError, match="no target"):
        plan_windows(1, 8, 8)
    with pytest.raises(ValueError, match="1 <= stride <= context"):
        plan_windows(100, 8, 9)


def test_eval_config_refuses_a_context_longer_than_the_model_and_a_stride_longer_than_the_context(tmp_path):
    assert EvalConfig().windows(128) == (128, 128)
    assert EvalConfig(context=64, stride=16).windows(128) == (64, 16)
    with pytest.raises(ValueError, match=r"eval.context=256 is longer than model.seq_len=128.*eval.context <= 128"):
        EvalConfig(context=256).windows(128)
    with pytest.raises(ValueError, match=r"eval.stride=200 is larger than the evaluation context 128"):
        EvalConfig(stride=200).windows(128)
    with pytest.raises(ValueError, match=r"eval.stride=9 is larger than eval.context=8"):
        EvalConfig(context=8, stride=9)
    with pytest.raises(ValueError, match="eval.context=0 must be >= 1"):
        EvalConfig(context=0)
    from mer.config.run_config import RunConfig

    with pytest.raises(ValueError, match="eval.context=64 is longer than model.seq_len=32"):
        RunConfig(model=get_preset("cpu-0.5m", seq_len=32), eval=EvalConfig(context=64), runs_dir=str(tmp_path))


# ---------------------------------------------------------------- the trainer's evaluation
def _trainer(small_bible, tmp_path, eval_tokens: int, **evaluation) -> Trainer:
    data_cfg, prepared = small_bible
    cfg = tiny_run_config(data_cfg, tmp_path, eval=EvalConfig(**evaluation))
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, eval_tokens=eval_tokens))
    sequence = TaskSequence(prepared.shards[:2], cfg.model.seq_len, cfg.n_new_per_step, cfg.seed, [2048, 2048],
                            eval_tokens=eval_tokens)
    (tmp_path / "run").mkdir()
    return Trainer(cfg, sequence, len(prepared.tokenizer), tmp_path / "run")


def _loss(trainer: Trainer, inputs: np.ndarray, targets: np.ndarray) -> torch.Tensor:
    """Summed loss of one direct forward over `inputs` (no windows)."""
    trainer.model.eval()
    with torch.no_grad():
        logits = trainer.model(input_ids=torch.from_numpy(inputs.astype(np.int64))[None]).logits[0]
        return F.cross_entropy(logits.double(), torch.from_numpy(targets.astype(np.int64)), reduction="sum")


def test_a_context_covering_the_span_equals_one_forward_over_it(small_bible, tmp_path):
    trainer = _trainer(small_bible, tmp_path, eval_tokens=30, batch_size=3)  # 29 targets < context 32
    losses = trainer.evaluate(boundary=False)
    for task in trainer.sequence.tasks:
        span = task.eval_tokens
        assert losses[task.name] == pytest.approx(float(_loss(trainer, span[:-1], span[1:])) / 29, rel=1e-6)
    assert trainer.flops.tokens_eval == 2 * 29  # one window of 29 inputs per task


def test_sliding_windows_give_every_target_its_documented_context(small_bible, tmp_path):
    """stride=1: target p is predicted from the `context` tokens before it (all of them when p <= context),
    computed here one forward per target, against the batched windows of evaluate()."""
    context, n = 8, 40
    trainer = _trainer(small_bible, tmp_path, eval_tokens=n, context=context, stride=1, batch_size=5)
    losses = trainer.evaluate(boundary=False)
    for task in trainer.sequence.tasks:
        span = task.eval_tokens
        total = sum(_last_loss(trainer, span[max(0, p - context):p], span[p]) for p in range(1, n))
        assert losses[task.name] == pytest.approx(total / (n - 1), rel=1e-5)
    plan = plan_windows(n, context, 1)
    assert trainer.flops.tokens_eval == 2 * plan.n_windows * context  # forward tokens computed, scored or not


def _last_loss(trainer: Trainer, inputs: np.ndarray, target: int) -> float:
    """Loss of `target` predicted after `inputs` (the last position's prediction of one forward)."""
    trainer.model.eval()
    with torch.no_grad():
        logits = trainer.model(input_ids=torch.from_numpy(inputs.astype(np.int64))[None]).logits[0, -1]
    return float(F.cross_entropy(logits.double()[None], torch.tensor([int(target)])))


def test_disjoint_windows_equal_the_mean_over_consecutive_chunks(small_bible, tmp_path):
    """stride = context (the default) on a span of whole windows: consecutive chunks of context + 1 tokens
    sharing one token, each one forward."""
    context = 32
    n = 3 * context + 1
    trainer = _trainer(small_bible, tmp_path, eval_tokens=n, batch_size=2)  # batches of 2 and 1 windows
    losses = trainer.evaluate(boundary=False)
    for task in trainer.sequence.tasks:
        span = task.eval_tokens
        total = sum(float(_loss(trainer, span[s:s + context], span[s + 1:s + context + 1]))
                    for s in range(0, n - 1, context))
        assert losses[task.name] == pytest.approx(total / (n - 1), rel=1e-5)


# ---------------------------------------------------------------- fingerprint
def test_fingerprint_names_the_tokens_windows_and_tokenizer():
    ids = np.array([5, 70000, 3, 1], dtype=np.uint32)
    assert span_sha256(ids) == hashlib.sha256(np.array([5, 70000, 3, 1], dtype="<i8").tobytes()).hexdigest()
    assert span_sha256(ids[[0, 2, 3]].astype(np.uint16)) == span_sha256(np.array([5, 3, 1], dtype=np.int64))
    fp = eval_fingerprint("tok1", 128, 64, {"en": ids, "fr": ids[:3]})
    assert fp == {"tokenizer_hash": "tok1", "context": 128, "stride": 64, "tasks": {
        "en": {"split": "val", "start": 0, "n_tokens": 4, "sha256": span_sha256(ids)},
        "fr": {"split": "val", "start": 0, "n_tokens": 3, "sha256": span_sha256(ids[:3])}}}
    fid = fingerprint_id(fp)
    assert len(fid) == 16 and int(fid, 16) >= 0
    assert fid == fingerprint_id(eval_fingerprint("tok1", 128, 64, {"fr": ids[:3], "en": ids}))  # order-free
    others = [eval_fingerprint("tok2", 128, 64, {"en": ids, "fr": ids[:3]}),
              eval_fingerprint("tok1", 256, 64, {"en": ids, "fr": ids[:3]}),
              eval_fingerprint("tok1", 128, 128, {"en": ids, "fr": ids[:3]}),
              eval_fingerprint("tok1", 128, 64, {"en": ids, "fr": ids[:2]}),
              eval_fingerprint("tok1", 128, 64, {"en": ids[::-1], "fr": ids[:3]})]
    assert len({fid, *map(fingerprint_id, others)}) == 6
