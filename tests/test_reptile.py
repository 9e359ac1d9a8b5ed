import io
import re

import pytest
import torch

from mer.model.llama import ModelConfig, build_model
from mer.optim.reptile import Reptile, ReptileConfig


def test_interpolation_exact_numbers():
    p = torch.nn.Parameter(torch.tensor([1.0, 2.0]))
    r = Reptile(ReptileConfig(k=2, eps=0.5), [p])
    r.reset_anchor(0)
    with torch.no_grad():
        p.copy_(torch.tensor([3.0, 6.0]))  # what the optimizer did in steps 1 and 2
    assert r.maybe_step(1) is False
    assert p.tolist() == [3.0, 6.0]
    assert r.maybe_step(2) is True
    assert p.tolist() == [2.0, 4.0]  # 1 + 0.5*(3-1), 2 + 0.5*(6-2)
    assert r.anchor[0].tolist() == [2.0, 4.0]
    assert r.anchor_step == 2 and r.n_steps == 1
    with torch.no_grad():
        p.copy_(torch.tensor([4.0, 4.0]))
    assert r.maybe_step(3) is False
    assert r.maybe_step(4) is True
    assert p.tolist() == [3.0, 4.0]
    assert p.requires_grad and p.grad is None


def test_reset_anchor_restarts_the_interval():
    p = torch.nn.Parameter(torch.tensor([0.0]))
    r = Reptile(ReptileConfig(k=3, eps=0.25), [p])
    r.reset_anchor(0)
    assert [r.maybe_step(s) for s in (1, 2)] == [False, False]
    with torch.no_grad():
        p.fill_(8.0)
    r.reset_anchor(2)  # a new task starts at step 2
    assert [r.maybe_step(s) for s in (3, 4)] == [False, False]
    with torch.no_grad():
        p.fill_(16.0)
    assert r.maybe_step(5) is True
    assert p.item() == 10.0  # 8 + 0.25*(16-8)


def test_maybe_step_without_anchor_sets_one():
    p = torch.nn.Parameter(torch.tensor([1.0]))
    r = Reptile(ReptileConfig(k=1, eps=0.5), [p])
    assert r.maybe_step(7) is False and r.anchor_step == 7


def _train(k, eps, n_steps=6, seed=0):
    """A tiny Llama trained with AdamW for n_steps, Reptile every k steps; returns the weights."""
    torch.manual_seed(seed)
    cfg = ModelConfig(name="t", n_layer=2, d_model=32, n_head=2, d_ff=64, seq_len=16)
    model = build_model(cfg, 64)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, betas=(0.9, 0.95), weight_decay=0.1)
    reptile = Reptile(ReptileConfig(k=k, eps=eps), model.parameters())
    reptile.reset_anchor(0)
    data = torch.randint(0, 64, (n_steps, 4, 16), generator=torch.Generator().manual_seed(1))  # [steps, B, T]
    for step in range(1, n_steps + 1):
        loss = model(input_ids=data[step - 1], labels=data[step - 1]).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        reptile.maybe_step(step)
    return {n: p.detach().clone() for n, p in model.named_parameters()}, reptile


def test_eps_one_is_bit_identical_to_off():
    off, r_off = _train(k=0, eps=0.1)
    one, r_one = _train(k=2, eps=1.0)
    assert all(torch.equal(off[n], one[n]) for n in off)
    assert not r_one.active and r_one.anchor == [] and r_one.n_steps == 0
    none, _ = _train(k=None, eps=0.5)
    assert all(torch.equal(off[n], none[n]) for n in off)
    # and the test can fail: a real Reptile step changes the weights
    half, r_half = _train(k=2, eps=0.5)
    assert r_half.n_steps == 3
    assert not all(torch.equal(off[n], half[n]) for n in off)


def test_interpolates_the_optimizer_parameters():
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    opt = torch.optim.AdamW(model.parameters(), lr=0.1)
    r = Reptile(ReptileConfig(k=2, eps=0.25), model.parameters())
    r.reset_anchor(0)
    anchor = [p.detach().clone() for p in model.parameters()]
    x = torch.randn(5, 4)
    for step in (1, 2):
        model(x).square().sum().backward()
        opt.step()
        opt.zero_grad()
        if step == 2:
            theta = [p.detach().clone() for p in model.parameters()]
        assert r.maybe_step(step) is (step == 2)
    for p, a, t in zip(model.parameters(), anchor, theta):
        assert torch.equal(p, a + 0.25 * (t - a))
    assert all(torch.equal(a, p) for a, p in zip(r.anchor, model.parameters()))


def test_state_round_trip_weights_only():
    p = torch.nn.Parameter(torch.tensor([[1.0, -2.0], [0.5, 4.0]]))
    r = Reptile(ReptileConfig(k=2, eps=0.5), [p])
    r.reset_anchor(0)
    with torch.no_grad():
        p.add_(1.0)
    r.maybe_step(2)
    with torch.no_grad():
        p.mul_(3.0)
    buf = io.BytesIO()
    torch.save(r.state_dict(), buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)

    q = torch.nn.Parameter(p.detach().clone())
    resumed = Reptile(ReptileConfig(k=2, eps=0.5), [q])
    resumed.load_state_dict(state)
    assert torch.equal(resumed.anchor[0], r.anchor[0])
    assert resumed.anchor[0] is not r.anchor[0]
    assert (resumed.anchor_step, resumed.n_steps) == (2, 1)
    assert resumed.maybe_step(3) is False
    assert r.maybe_step(4) and resumed.maybe_step(4)
    assert torch.equal(p, q)
    # anchor a = p0 + 0.5 (first step: p0 + 0.5*1); then p = 3a, so a + 0.5*(3a - a) = 2a
    assert q.tolist() == [[3.0, -3.0], [2.0, 9.0]]


def test_load_rejects_other_model():
    r = Reptile(ReptileConfig(k=2, eps=0.5), [torch.nn.Parameter(torch.zeros(3))])
    r.reset_anchor(0)
    other = Reptile(ReptileConfig(k=2, eps=0.5), [torch.nn.Parameter(torch.zeros(4))])
    with pytest.raises(ValueError, match="shape"):
        other.load_state_dict(r.state_dict())


def test_tied_and_frozen_parameters_counted_once():
    w = torch.nn.Parameter(torch.zeros(2))
    frozen = torch.nn.Parameter(torch.zeros(2), requires_grad=False)
    r = Reptile(ReptileConfig(k=1, eps=0.5), [w, w, frozen])
    assert r.params == [w]


@pytest.mark.parametrize(
    "kwargs, message",
    [({"k": -1}, "k=-1"), ({"eps": 0.0}, "eps=0.0"), ({"eps": 1.5}, "eps=1.5"),
     ({"anchor_device": "nowhere"}, "anchor_device='nowhere'")],
)
def test_config_validation(kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        ReptileConfig(**kwargs)
