"""eval.grad_alignment (mer/evaluation/grad_alignment.py): cosines against known answers and a direct computation, and a
run with it on trains bit-identically to one with it off."""

from __future__ import annotations

import dataclasses
import json
import math
from contextlib import nullcontext
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from mer_testing import tiny_run_config

from mer.config.run_config import EvalConfig
from mer.evaluation.grad_alignment import FSDP_REFUSAL, GradAlignment, build_grad_alignment
from mer.evaluation.windows import plan_windows
from mer.launch.runner import run_training


class Unigram(torch.nn.Module):
    """Predicts every token from a bias alone: the gradient of the mean loss is softmax(bias) - token frequencies,
    so the answer of a hand-built case is known in closed form."""

    def __init__(self, vocab: int) -> None:
        super().__init__()
        self.bias = torch.nn.Parameter(torch.zeros(vocab))

    def forward(self, input_ids: torch.Tensor) -> SimpleNamespace:
        return SimpleNamespace(logits=self.bias.expand(*input_ids.shape, -1))


def _alignment(model, spans, context=8, stride=None, windows=8, batch_size=2):
    plans = [plan_windows(len(s), context, stride or context) for s in spans]
    return GradAlignment(model, spans, plans, windows, batch_size, torch.device("cpu"), nullcontext)


def test_hand_built_cases_give_the_known_cosines():
    zeros, ones, half = np.zeros(33, np.int64), np.ones(33, np.int64), np.tile([0, 1], 17)[:33]
    # Gradients (over 2 symbols, uniform prediction): zeros -> (0.5, -0.5), ones -> (-0.5, 0.5), half -> (0, 0).
    fields, tokens = _alignment(Unigram(2), [zeros, zeros, ones, half]).measure(3, ["a", "b", "c", "d"])
    assert fields["grad_norm"]["d"] == pytest.approx(0.0, abs=1e-7)
    # The current task "d" has no direction: every cosine is null, and so is the mean.
    assert fields["grad_cosine"] == {"a": None, "b": None, "c": None} and fields["grad_cosine_mean"] is None
    fields, _ = _alignment(Unigram(2), [zeros, zeros, ones]).measure(2, ["a", "b", "c"])
    assert fields["grad_cosine"] == {"a": pytest.approx(-1.0), "b": pytest.approx(-1.0)}
    assert fields["grad_norm"] == {"c": pytest.approx(math.sqrt(0.5)), "a": pytest.approx(math.sqrt(0.5)),
                                   "b": pytest.approx(math.sqrt(0.5))}
    fields, tokens = _alignment(Unigram(2), [zeros, ones, zeros]).measure(2, ["a", "b", "c"])
    # Identical batches: cosine 1; opposite: -1; the mean of the two is 0.
    assert fields["grad_cosine"] == {"a": pytest.approx(1.0), "b": pytest.approx(-1.0)}
    assert fields["grad_cosine_mean"] == pytest.approx(0.0, abs=1e-12)
    assert tokens == 3 * 4 * 8  # 3 tasks x 4 windows of 8 inputs, forward and backward
    # Task 0 has nothing to compare with.
    fields, tokens = _alignment(Unigram(2), [zeros, ones]).measure(0, ["a", "b"])
    assert fields == {"grad_cosine": {}, "grad_cosine_mean": None, "grad_norm": {"a": pytest.approx(math.sqrt(0.5))}}
    assert tokens == 32


def test_a_partly_opposed_task_gives_the_closed_form_negative_cosine():
    # 3 symbols: task a is all 0 -> grad (1/3-1, 1/3, 1/3); task b is 1 and 2 alike -> (1/3, 1/3-1/2, 1/3-1/2).
    a, b = np.zeros(65, np.int64), np.tile([1, 2], 33)[:65]
    fields, _ = _alignment(Unigram(3), [a, b], context=16).measure(1, ["a", "b"])
    ga, gb = np.array([-2 / 3, 1 / 3, 1 / 3]), np.array([1 / 3, -1 / 6, -1 / 6])
    assert fields["grad_cosine"]["a"] == pytest.approx(ga @ gb / np.linalg.norm(ga) / np.linalg.norm(gb))
    assert fields["grad_cosine"]["a"] == pytest.approx(-1.0)  # the two are exactly opposed in direction


def _tiny_llama(seed: int = 0):
    from mer.model.llama import build_model, get_preset

    torch.manual_seed(seed)
    return build_model(get_preset("cpu-0.5m", seq_len=16), 64)


def _direct_gradient(model, span: np.ndarray, context: int, stride: int, n_windows: int) -> torch.Tensor:
    """The flat gradient of the mean scored-target loss of the first windows, by plain .backward() over ONE batch."""
    plan = plan_windows(len(span), context, stride)
    rows = np.arange(min(n_windows, plan.n_windows))
    window = torch.from_numpy(span[plan.positions(rows)])
    targets = window[:, 1:].clone()
    for r, first in enumerate(plan.first_scored[rows]):
        targets[r, :first] = -100
    model.zero_grad(set_to_none=True)
    loss = F.cross_entropy(model(input_ids=window[:, :-1]).logits.flatten(0, 1), targets.flatten())
    loss.backward()
    flat = torch.cat([p.grad.flatten() for p in model.parameters()])
    model.zero_grad(set_to_none=True)
    return flat


def test_cosines_and_norms_equal_a_direct_computation_on_a_tiny_llama():
    model = _tiny_llama()
    rng = np.random.default_rng(0)
    spans = [rng.integers(0, 64, 90) for _ in range(3)]
    context, stride = 16, 8  # overlapping windows: only the later targets of windows after the first count
    fields, tokens = _alignment(model, spans, context=context, stride=stride, windows=5, batch_size=2).measure(
        2, ["en", "fr", "de"])
    flat = [_direct_gradient(model, s, context, stride, 5).double() for s in spans]
    for j, name in enumerate(["en", "fr"]):
        expected = float(flat[2] @ flat[j] / flat[2].norm() / flat[j].norm())
        assert fields["grad_cosine"][name] == pytest.approx(expected, rel=1e-5, abs=1e-6)
    for j, name in enumerate(["en", "fr", "de"]):
        assert fields["grad_norm"][name] == pytest.approx(float(flat[j].norm()), rel=1e-5)
    assert fields["grad_cosine_mean"] == pytest.approx(np.mean(list(fields["grad_cosine"].values())))
    assert tokens == 3 * 5 * 16


def test_measuring_leaves_grads_rng_and_mode_alone():
    model = _tiny_llama()
    model.train()
    for p in model.parameters():
        p.grad = torch.full_like(p, 0.25)  # a gradient the trainer might hold: must stay as it is
    rng = np.random.default_rng(1)
    spans = [rng.integers(0, 64, 60) for _ in range(2)]
    torch.manual_seed(123)
    before = torch.get_rng_state()
    _alignment(model, spans, context=16).measure(1, ["a", "b"])
    assert torch.equal(torch.get_rng_state(), before)
    assert model.training
    assert all(torch.equal(p.grad, torch.full_like(p, 0.25)) for p in model.parameters())


def test_sharded_models_and_stray_settings_are_refused():
    cfg = SimpleNamespace(eval=EvalConfig(grad_alignment=True))
    with pytest.raises(ValueError, match="parallel=fsdp") as refused:
        build_grad_alignment(cfg, _tiny_llama(), [], [], SimpleNamespace(), nullcontext, sharded=True)
    assert str(refused.value) == FSDP_REFUSAL and "parallel=ddp" in FSDP_REFUSAL
    assert build_grad_alignment(SimpleNamespace(eval=EvalConfig()), None, [], [], None, nullcontext, True) is None
    with pytest.raises(ValueError, match="eval.grad_alignment=true"):
        EvalConfig(grad_alignment_windows=4)
    with pytest.raises(ValueError, match=">= 1"):
        EvalConfig(grad_alignment=True, grad_alignment_windows=0)


# ------------------------------------------------------------------------------------------ in a run
def _resolved(cfg) -> dict:
    return json.loads(json.dumps(dataclasses.asdict(cfg), default=str))


def _records(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


ALIGNMENT_FIELDS = ("grad_cosine", "grad_cosine_mean", "grad_norm")


@pytest.fixture(scope="module")
def runs_off_and_on(small_bible, tmp_path_factory):
    """The same tiny run (replay and Reptile on) without and with eval.grad_alignment: (cfg, summary) each."""
    out = []
    for on in (False, True):
        root = tmp_path_factory.mktemp("alignment_on" if on else "alignment_off")
        cfg = tiny_run_config(small_bible[0], root, k=3, eps=0.5, alpha=0.5,
                              eval=EvalConfig(every=8, batch_size=4, grad_alignment=on))
        out.append((cfg, run_training(cfg, "run", _resolved(cfg))))
    return out


def test_a_run_with_alignment_trains_bit_identically(runs_off_and_on):
    (off_cfg, off), (on_cfg, on) = runs_off_and_on
    assert on["loss_matrix"] == off["loss_matrix"] and on["metrics"] == off["metrics"]
    timing = ("wall_time", "tokens_per_s", "data_wait_s", "mfu", "flops_eval", "tokens_eval", *ALIGNMENT_FIELDS)
    strip = lambda rs: [{k: v for k, v in r.items() if k not in timing} for r in rs]  # noqa: E731
    off_records, on_records = _records(Path(off_cfg.runs_dir) / "run"), _records(Path(on_cfg.runs_dir) / "run")
    assert strip(on_records) == strip(off_records)  # every train loss, eval loss, token and training FLOP count
    import torch as _torch

    weights = [_torch.load(Path(c.runs_dir) / "run" / "checkpoint" / "state.pt", weights_only=True)["model"]
               for c in (off_cfg, on_cfg)]
    assert all(_torch.equal(weights[0][name], weights[1][name]) for name in weights[0])


def test_alignment_records_and_their_evaluation_flops(runs_off_and_on):
    (off_cfg, off), (on_cfg, on) = runs_off_and_on
    records = _records(Path(on_cfg.runs_dir) / "run")
    evals = [r for r in records if r["event"] == "eval"]
    names = on["tasks"]
    for e in evals:
        earlier = names[: e["task_index"]]
        assert list(e["grad_cosine"]) == earlier
        assert list(e["grad_norm"]) == [names[e["task_index"]], *earlier]
        assert all(v > 0 for v in e["grad_norm"].values())
        assert all(-1.0 <= c <= 1.0 for c in e["grad_cosine"].values())
        if earlier:
            assert e["grad_cosine_mean"] == pytest.approx(np.mean(list(e["grad_cosine"].values())))
        else:
            assert e["grad_cosine_mean"] is None
    assert not any(f in r for r in _records(Path(off_cfg.runs_dir) / "run") for f in ALIGNMENT_FIELDS)
    # 129 held-out tokens in 32-token windows: 4 windows per task (fewer than the default 8), 128 tokens; an
    # evaluation while task i trains forwards and backpropagates i + 1 such batches, at a trained token's cost.
    from mer.compute.flops import estimate_flops

    cfg = on_cfg
    extra_tokens = sum(128 * (e["task_index"] + 1) for e in evals)
    assert on["totals"]["tokens_eval"] - off["totals"]["tokens_eval"] == extra_tokens
    rates = estimate_flops(on["n_params"], on["n_params_nonembedding"], cfg.model.n_layer, cfg.model.seq_len,
                           cfg.model.d_model, 512)
    assert on["totals"]["flops_eval"] - off["totals"]["flops_eval"] == extra_tokens * rates.train_per_token
    assert on["totals"]["flops_train"] == off["totals"]["flops_train"]


def test_the_report_of_real_runs_shows_alignment_where_it_was_measured(runs_off_and_on, tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    from analysis.report import build_report

    (off_cfg, _), (on_cfg, on) = runs_off_and_on
    rep = build_report([Path(off_cfg.runs_dir), Path(on_cfg.runs_dir)], tmp_path / "report", n_boot=0, progress=False)
    assert rep.errors == []
    text = (tmp_path / "report" / "report.md").read_text()
    section = text.split("## Gradient alignment")[1]
    assert "1 usable run(s) have no alignment records" in section
    assert (tmp_path / "report" / "figures" / "grad_alignment.png").stat().st_size > 1000
    # The table's mean is the mean of the run's per-evaluation means (tasks 1 on), to 3 decimals.
    means = [r["grad_cosine_mean"] for r in _records(Path(on_cfg.runs_dir) / "run")
             if r["event"] == "eval" and r["grad_cosine_mean"] is not None]
    assert f"| {np.mean(means):.3f} |" in section
    # Every run records this checkout's commit and the command (the per-run table of the report).
    assert text.count(f"| {on['provenance']['attempts'][0]['command']} |") == 2


# ------------------------------------------------------------------------------------------ several processes
@pytest.mark.slow
def test_two_ddp_processes_measure_what_one_process_measures(small_bible, tmp_path):
    """Each rank takes every other window of a task's batch and the gradient sums are all-reduced."""
    from test_ddp import SPEC, _config, _torchrun

    spec = {**SPEC, "grad_alignment": True}
    result = _torchrun(Path(small_bible[0].data_dir), tmp_path / "two", **spec)
    assert result.returncode == 0, result.stderr[-4000:]
    cfg = _config(small_bible[0].data_dir, tmp_path / "one", **spec)
    one = run_training(cfg, "run", _resolved(cfg))
    two = json.loads((tmp_path / "two" / "run" / "summary.json").read_text())
    assert two["world_size"] == 2 and two["totals"] == one["totals"]  # the same evaluation FLOPs counted
    evals = [[r for r in _records(root / "run") if r["event"] == "eval"]
             for root in (tmp_path / "one", tmp_path / "two")]
    assert len(evals[0]) == len(evals[1]) > 10 and any(r["grad_cosine"] for r in evals[0])
    for a, b in zip(*evals, strict=True):
        assert b["grad_cosine"] == pytest.approx(a["grad_cosine"], rel=1e-3, abs=1e-4)
        assert b["grad_norm"] == pytest.approx(a["grad_norm"], rel=1e-3)


@pytest.mark.slow
def test_fsdp_is_refused_with_the_reason(small_bible, tmp_path):
    from test_ddp import FSDP, SPEC, _torchrun

    result = _torchrun(Path(small_bible[0].data_dir), tmp_path, **{**SPEC, **FSDP, "grad_alignment": True})
    assert result.returncode != 0
    assert "eval.grad_alignment needs every parameter's whole gradient" in result.stderr
    assert not (tmp_path / "run" / "metrics.jsonl").exists()
