import math
import re

import pytest
import torch

from mer.model.llama import (
    CPU_SCALING_LADDER,
    PRESET_VOCAB,
    PRESETS,
    SMALL_VOCAB_LADDER,
    ModelConfig,
    build_model,
    count_parameters,
    estimate_parameters,
    get_preset,
)

NAMED_NON_EMBEDDING = {"cpu-ne27k": 27e3, "cpu-ne83k": 83e3, "cpu-ne200k": 200e3, "cpu-ne440k": 440e3,
                       "cpu-ne1m": 1e6}
NAMED_SIZE = {"cpu-0.3m": 0.3e6, "cpu-0.5m": 0.5e6, "cpu-1m": 1e6, "cpu-2m": 2e6, "cpu-3m": 3e6, "cpu-8m": 8e6,
              "cpu-30m": 30e6,
              "99m": 99e6, "560m": 560e6, "1b": 1e9, "3b": 3e9, "6b": 6e9}


def test_ladders_are_complete():
    assert set(PRESETS) == set(NAMED_SIZE) | set(NAMED_NON_EMBEDDING)
    for name in ("99m", "560m", "1b", "3b", "6b"):
        assert PRESETS[name].seq_len == 2048
    for name in ("cpu-0.5m", "cpu-2m", "cpu-8m", "cpu-30m"):
        assert 128 <= PRESETS[name].seq_len <= 256


def test_cpu_scaling_ladder_spans_the_compute_axis():
    """Five sizes on one seq_len over at least 1.5 decades of non-embedding parameters (issue: replay or scale?)."""
    assert len(CPU_SCALING_LADDER) >= 5
    assert {PRESETS[name].seq_len for name in CPU_SCALING_LADDER} == {128}
    sizes = [estimate_parameters(PRESETS[name], 4096)[1] for name in CPU_SCALING_LADDER]
    assert sizes == sorted(sizes) and len(set(sizes)) == len(sizes)
    assert math.log10(sizes[-1] / sizes[0]) >= 1.5
    paper_shapes = {"99m": (16, 512, 8), "560m": (24, 1024, 16), "1b": (24, 1792, 28),
                    "3b": (30, 3072, 24), "6b": (32, 4096, 32)}
    for name, shape in paper_shapes.items():
        cfg = PRESETS[name]
        assert (cfg.n_layer, cfg.d_model, cfg.n_head) == shape


@pytest.mark.parametrize("name", sorted(NAMED_SIZE))
def test_preset_size_within_10_percent_of_name(name):
    total, _ = estimate_parameters(PRESETS[name], PRESET_VOCAB[name])
    assert abs(total / NAMED_SIZE[name] - 1) <= 0.10, (name, total)


def test_small_vocabulary_ladder_is_named_by_non_embedding_parameters():
    """cpu-ne* names state the non-embedding count (within 3%), on one seq_len, over at least 1.5 decades; at
    vocabulary 512 the embeddings stay under half of every size but the smallest."""
    assert SMALL_VOCAB_LADDER == tuple(NAMED_NON_EMBEDDING)
    assert {PRESETS[name].seq_len for name in SMALL_VOCAB_LADDER} == {128}
    counts = [estimate_parameters(PRESETS[name], 512) for name in SMALL_VOCAB_LADDER]
    for name, (total, non_embedding) in zip(SMALL_VOCAB_LADDER, counts):
        assert abs(non_embedding / NAMED_NON_EMBEDDING[name] - 1) <= 0.03, (name, non_embedding)
        assert name == "cpu-ne27k" or non_embedding > total / 2, (name, total, non_embedding)
    assert math.log10(counts[-1][1] / counts[0][1]) >= 1.5


def test_estimate_exact_numbers():
    # cpu-2m at vocab 4096: per layer 2*128^2 + 2*128^2 + 3*128*384 + 2*128 = 213,248;
    # 4 layers + final norm = 853,120; embeddings 2 * 4096 * 128 = 1,048,576.
    assert estimate_parameters(PRESETS["cpu-2m"], 4096) == (1_901_696, 853_120)
    # 6b shape with Llama-2-7B's width and vocabulary gives the well-known 6,738,415,616.
    llama2 = get_preset("6b", d_ff=11008)
    assert estimate_parameters(llama2, 32000)[0] == 6_738_415_616


@pytest.mark.parametrize("name", ["cpu-0.5m", "cpu-2m", "cpu-8m", "cpu-30m"])
def test_count_matches_estimate_for_built_cpu_models(name):
    model = build_model(PRESETS[name], 4096)
    assert count_parameters(model) == estimate_parameters(PRESETS[name], 4096)


@pytest.mark.parametrize("name", ["99m", "560m", "1b", "3b", "6b"])
def test_count_matches_estimate_on_meta_device(name):
    with torch.device("meta"):
        model = build_model(PRESETS[name], 50304)
    assert count_parameters(model) == estimate_parameters(PRESETS[name], 50304)


def test_gqa_and_tied_counts():
    cfg = ModelConfig(name="custom", n_layer=2, d_model=64, n_head=8, n_kv_head=2, d_ff=96,
                      seq_len=32, tie_embeddings=True)
    model = build_model(cfg, 1000)
    total, non_emb = count_parameters(model)
    # per layer: q,o 64*64 each; k,v 64*16 each; mlp 3*64*96; norms 2*64 -> 28,800; +64 final norm
    assert non_emb == 2 * 28_800 + 64
    assert total == non_emb + 1000 * 64  # tied: one matrix
    assert (total, non_emb) == estimate_parameters(cfg, 1000)
    assert model.lm_head.weight is model.model.embed_tokens.weight


def test_build_model_forward_and_settings():
    cfg = PRESETS["cpu-0.5m"]
    torch.manual_seed(0)
    model = build_model(cfg, 4096)
    assert model.config._attn_implementation == "sdpa"
    assert model.config.rope_parameters["rope_theta"] == cfg.rope_theta
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert model.lm_head.weight is not model.model.embed_tokens.weight
    x = torch.randint(0, 4096, (2, cfg.seq_len))  # [B, T]
    out = model(input_ids=x, labels=x)
    assert out.logits.shape == (2, cfg.seq_len, 4096)
    # freshly initialised: the loss is close to the uniform cross-entropy ln(4096) = 8.318
    assert abs(out.loss.item() - 8.318) < 0.1
    # seeded: the same seed builds the same weights
    torch.manual_seed(0)
    again = build_model(cfg, 4096)
    assert torch.equal(again.model.embed_tokens.weight, model.model.embed_tokens.weight)


def test_get_preset_overrides_and_unknown():
    assert get_preset("cpu-2m", seq_len=64).seq_len == 64
    assert PRESETS["cpu-2m"].seq_len == 128  # the preset itself is untouched
    with pytest.raises(ValueError, match="model.name='nope'"):
        get_preset("nope")


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"n_layer": 0}, "model.n_layer=0"),
        ({"d_model": 100, "n_head": 3}, "model.n_head=3"),
        ({"d_model": 60, "n_head": 4}, "model.n_head=4"),  # head dim 15 is odd
        ({"n_kv_head": 3}, "model.n_kv_head=3"),
        ({"init_std": 0.0}, "model.init_std=0.0"),
        ({"rope_theta": -1.0}, "model.rope_theta=-1.0"),
    ],
)
def test_config_validation(kwargs, field):
    with pytest.raises(ValueError, match=re.escape(field)):
        ModelConfig(**kwargs)


def test_custom_ladder_overridden_preset_is_relabelled_by_its_shape():
    """A name never contradicts the shape (issue 19): `model=cpu-2m model.d_model=144` is not called cpu-2m."""
    assert get_preset("cpu-2m", d_model=144).name == "custom-L4-d144-h4-ff384"
    assert get_preset("6b", d_ff=11008).name == "custom-L32-d4096-h32-ff11008"
    assert get_preset("cpu-2m", n_kv_head=2).name == "custom-L4-d128-h4-kv2-ff384"
    assert get_preset("cpu-2m", tie_embeddings=True).name == "custom-L4-d128-h4-ff384-tied"
    # Fields that change training, not the architecture, keep the name; so does n_kv_head = n_head (the same attention).
    for same in ({"seq_len": 64}, {"init_std": 0.01}, {"rope_theta": 5e5}, {"norm_eps": 1e-6}, {"n_kv_head": 4}):
        assert get_preset("cpu-2m", **same).name == "cpu-2m", same
    assert all(cfg.name == name for name, cfg in PRESETS.items())


def test_custom_ladder_custom_shapes_are_named_by_their_shape():
    ladder = [ModelConfig(name="custom", n_layer=n, d_model=d, n_head=4, d_ff=f) for n, d, f in
              ((2, 32, 96), (4, 48, 128), (4, 80, 224), (4, 128, 384))]
    assert [c.name for c in ladder] == ["custom-L2-d32-h4-ff96", "custom-L4-d48-h4-ff128", "custom-L4-d80-h4-ff224",
                                        "custom-L4-d128-h4-ff384"]
    # A stale shape label (copied from another run) is corrected too.
    assert ModelConfig(name="custom-L2-d32-h4-ff96", n_layer=3, d_model=32, n_head=4, d_ff=96).name == "custom-L3-d32-h4-ff96"


def test_custom_ladder_names_through_the_command_line_config():
    """As `python -m mer.run` composes it: the run's config (config.json) records the shape's name."""
    from hydra import compose, initialize_config_module

    from mer.config.run_config import RunConfig, register_configs, to_dataclass

    register_configs()
    with initialize_config_module(config_module="mer.conf", version_base="1.3"):
        names = {tuple(o): to_dataclass(compose("config", overrides=o), RunConfig).model.name
                 for o in (["model=cpu-2m", "model.d_model=144"], ["model=cpu-2m"], ["model.name=custom", "model.n_layer=2"],
                           ["model=cpu-2m", "model.seq_len=64"])}
    assert names == {("model=cpu-2m", "model.d_model=144"): "custom-L4-d144-h4-ff384", ("model=cpu-2m",): "cpu-2m",
                     ("model.name=custom", "model.n_layer=2"): "custom-L2-d128-h4-ff384",
                     ("model=cpu-2m", "model.seq_len=64"): "cpu-2m"}
