import math
import re

import pytest
import torch

from mer.optim.schedule import OptimConfig, build_optimizer, lr_at, warmup_cosine, warmup_steps_for


def test_warmup_cosine_exact_values():
    # lr 1.0 -> 0.1 over 10 steps with 2 warmup steps; cosine runs over u = 3..10 (8 steps).
    got = [warmup_cosine(s, total_steps=10, warmup_steps=2, lr=1.0, min_lr=0.1) for s in range(12)]
    expected = [0.5, 1.0] + [0.1 + 0.45 * (1 + math.cos(math.pi * i / 8)) for i in range(1, 8)] + [0.1, 0.1, 0.1]
    assert got == pytest.approx(expected, rel=1e-15, abs=0)
    assert got[1] == 1.0  # the last warmup step reaches the peak
    assert got[5] == pytest.approx(0.55, abs=1e-15)  # half-way through the cosine
    assert got[9] == 0.1  # the last step uses exactly min_lr
    assert got[2] == pytest.approx(0.9657457896300791, rel=1e-14)


def test_no_warmup_starts_below_peak_and_decreases():
    got = [warmup_cosine(s, 4, 0, 2.0, 0.0) for s in range(4)]
    assert got == pytest.approx([2.0 * 0.5 * (1 + math.cos(math.pi * u / 4)) for u in range(1, 5)], abs=1e-15)
    assert got[-1] == 0.0
    assert all(a > b for a, b in zip(got, got[1:]))


def test_warmup_steps_for():
    assert warmup_steps_for(1000, 0.01) == 10
    assert warmup_steps_for(100, 0.01) == 1
    assert warmup_steps_for(10, 0.01) == 1  # at least one step
    assert warmup_steps_for(6, 0.25) == 2  # 1.5 rounds up
    assert warmup_steps_for(100, 0.0) == 0


def test_one_schedule_over_all_tasks():
    cfg = OptimConfig(lr=1.0, min_lr=0.1, warmup_fraction=0.2)
    got = [lr_at(s, [4, 6], cfg) for s in range(10)]
    assert got == [warmup_cosine(s, 10, 2, 1.0, 0.1) for s in range(10)]
    assert lr_at(4, [4, 6], cfg) < lr_at(3, [4, 6], cfg)  # no restart at the task boundary


def test_rewarm_each_task_exact_values():
    cfg = OptimConfig(lr=1.0, min_lr=0.1, warmup_fraction=0.25, rewarm_each_task=True)
    got = [lr_at(s, [4, 6], cfg) for s in range(11)]
    c = math.cos
    expected = [
        # task 0: 4 steps, warmup round(1.0) = 1
        1.0, 0.1 + 0.45 * (1 + c(math.pi / 3)), 0.1 + 0.45 * (1 + c(2 * math.pi / 3)), 0.1,
        # task 1: 6 steps, warmup round(1.5) = 2
        0.5, 1.0, 0.1 + 0.45 * (1 + c(math.pi / 4)), 0.1 + 0.45 * (1 + c(math.pi / 2)),
        0.1 + 0.45 * (1 + c(3 * math.pi / 4)), 0.1,
        # past the end
        0.1,
    ]
    assert got == pytest.approx(expected, rel=1e-15, abs=0)
    assert got[1] == pytest.approx(0.775, rel=1e-15)
    assert got[7] == pytest.approx(0.55, rel=1e-15)


def test_lr_at_rejects_bad_task_steps():
    with pytest.raises(ValueError, match="task_steps"):
        lr_at(0, [], OptimConfig())


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"lr": 0.0}, "optim.lr=0.0"),
        ({"lr": 1e-3, "min_lr": 2e-3}, "optim.min_lr=0.002"),
        ({"betas": (0.9, 1.0)}, "optim.betas=(0.9, 1.0)"),
        ({"weight_decay": -0.1}, "optim.weight_decay=-0.1"),
        ({"grad_clip": -1.0}, "optim.grad_clip=-1.0"),
        ({"warmup_fraction": 1.0}, "optim.warmup_fraction=1.0"),
        ({"batch_size": 0}, "optim.batch_size=0"),
        ({"batch_size": 10, "grad_accum": 3}, "optim.grad_accum=3"),
    ],
)
def test_config_validation(kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        OptimConfig(**kwargs)


def test_config_defaults_and_list_betas():
    cfg = OptimConfig(betas=[0.8, 0.99], batch_size=8, grad_accum=4)
    assert cfg.betas == (0.8, 0.99) and cfg.micro_batch_size == 2
    d = OptimConfig()
    assert (d.betas, d.weight_decay, d.grad_clip, d.warmup_fraction, d.rewarm_each_task) == (
        (0.9, 0.95), 0.1, 1.0, 0.01, False)


class _Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = torch.nn.Embedding(5, 3)
        self.norm = torch.nn.LayerNorm(3)  # weight and bias: 1-D, no decay
        self.lin = torch.nn.Linear(3, 3, bias=False)
        self.frozen = torch.nn.Parameter(torch.ones(2, 2), requires_grad=False)


def test_build_optimizer_groups_and_decay():
    model = _Tiny()
    cfg = OptimConfig(lr=0.5, min_lr=0.0, weight_decay=0.1)
    opt = build_optimizer(model, cfg)
    decay, no_decay = opt.param_groups
    assert {id(p) for p in decay["params"]} == {id(model.emb.weight), id(model.lin.weight)}
    assert {id(p) for p in no_decay["params"]} == {id(model.norm.weight), id(model.norm.bias)}
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert decay["betas"] == (0.9, 0.95) and decay["lr"] == 0.5
    # With zero gradients the Adam update is exactly 0, so one step only applies the decay.
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    for p in model.parameters():
        if p.requires_grad:
            p.grad = torch.zeros_like(p)
    opt.step()
    assert torch.equal(model.lin.weight, before["lin.weight"] * (1 - 0.5 * 0.1))
    assert torch.equal(model.emb.weight, before["emb.weight"] * (1 - 0.5 * 0.1))
    assert torch.equal(model.norm.weight, before["norm.weight"])
    assert torch.equal(model.frozen, before["frozen"])


def test_build_optimizer_dedups_tied_weights():
    model = _Tiny()
    model.lin2 = torch.nn.Linear(3, 5, bias=False)
    model.lin2.weight = model.emb.weight  # tied [5, 3]
    opt = build_optimizer(model, OptimConfig())
    assert sum(len(g["params"]) for g in opt.param_groups) == 4
