import io

import pytest
import torch

from mer.compute.flops import FlopCounter, FlopRates, estimate_flops
from mer.model.llama import PRESETS, build_model, count_parameters


def test_estimate_flops_exact_small():
    rates = estimate_flops(n_params=500, n_params_nonembedding=100, n_layer=2, seq_len=10, d_model=4, vocab_size=50)
    # 6*100 + 6*2*10*4 + 6*4*50 = 600 + 480 + 1200
    assert rates == FlopRates(train_per_token=2280, eval_per_token=760, reptile_per_step=1500)


def test_estimate_flops_from_built_model():
    cfg = PRESETS["cpu-2m"]
    total, non_emb = count_parameters(build_model(cfg, 4096))
    rates = estimate_flops(total, non_emb, cfg.n_layer, cfg.seq_len, cfg.d_model, 4096)
    # 6*853,120 + 6*4*128*128 + 6*128*4096 = 5,118,720 + 393,216 + 3,145,728
    assert rates.train_per_token == 8_657_664
    assert rates.eval_per_token == 2_885_888
    assert rates.reptile_per_step == 3 * 1_901_696


def test_estimate_flops_rejects_bad_input():
    with pytest.raises(ValueError, match="seq_len=0"):
        estimate_flops(10, 5, 1, 0, 4, 8)


def test_counter_totals_exact():
    c = FlopCounter(FlopRates(2280, 760, 1500))
    c.add_train_step(n_new_tokens=300, n_replay_tokens=100)
    c.add_eval(50)
    c.add_reptile_step()
    c.add_reptile_step()
    assert (c.tokens_new, c.tokens_replay, c.tokens_eval, c.reptile_steps) == (300, 100, 50, 2)
    assert (c.flops_new, c.flops_replay, c.flops_eval, c.flops_reptile) == (684_000, 228_000, 38_000, 3_000)
    assert c.flops_train == 684_000 + 228_000 + 3_000
    d = c.as_dict()
    assert d["flops_train"] == 915_000.0 and isinstance(d["flops_train"], float)
    assert d["tokens_replay"] == 100 and isinstance(d["tokens_replay"], int)
    assert set(d) >= {"tokens_new", "tokens_replay", "flops_new", "flops_replay", "flops_eval",
                      "flops_reptile", "flops_train"}


def test_replay_scales_compute_per_new_token():
    # Fixed batch of 8 sequences of 10 tokens; alpha=0.5 -> 4 new + 4 replayed sequences.
    plain, replay = FlopCounter(FlopRates(2280, 760, 1500)), FlopCounter(FlopRates(2280, 760, 1500))
    for _ in range(3):
        plain.add_train_step(80, 0)
        replay.add_train_step(40, 40)
    assert plain.flops_train == replay.flops_train
    assert replay.flops_train / replay.tokens_new == 2 * plain.flops_train / plain.tokens_new


def test_counter_state_round_trip_weights_only():
    c = FlopCounter(FlopRates(10**12, 10**12 // 3, 3 * 10**9))
    c.add_train_step(10**12, 10**11)  # totals beyond 2**63: still exact Python ints
    c.add_eval(7)
    c.add_reptile_step()
    buf = io.BytesIO()
    torch.save(c.state_dict(), buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)
    fresh = FlopCounter(c.rates)
    fresh.load_state_dict(state)
    assert fresh == c
    assert fresh.flops_new == 10**24
