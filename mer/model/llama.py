"""Model zoo: Llama-architecture decoder-only models built from a small config (never from the hub).

Every model is a `transformers.LlamaForCausalLM` (RMSNorm, RoPE, SwiGLU MLP, no biases) built
from a `LlamaConfig` with `attn_implementation="sdpa"`. Two ladders of presets:

* a CPU ladder for laptops and tests, counted at a vocabulary of 4096 (the size of a small
  tokenizer trained on the built-in corpus), each trainable on 2 CPU cores; its five sizes at seq_len
  128 (`CPU_SCALING_LADDER`) span 1.85 decades of non-embedding parameters for `+sweep=replay_vs_scale`;
* a small-vocabulary ladder (`SMALL_VOCAB_LADDER`, named by non-embedding parameters) for `+sweep=size_matters`,
  where at vocabulary 512 a bigger model is mostly more layers and width rather than a wider embedding table;
* the paper's ladder (Abbes et al. 2025) at seq_len 2048. The paper gives layers / hidden / heads;
  the SwiGLU widths `d_ff` are chosen here so that the total parameter count lands near the name
  at the GPT-NeoX vocabulary padded to 50304 (the paper's code is a GPT-NeoX fork), untied
  input embedding and output head, full multi-head attention (`n_kv_head == n_head`).

Parameter counts (`estimate_parameters`, equal to `count_parameters` of the built model):

| preset    | n_layer | d_model | n_head | d_ff  | seq_len | vocab | total      | non-embedding |
| --------- | ------- | ------- | ------ | ----- | ------- | ----- | ---------- | ------------- |
| cpu-0.3m  | 2       | 32      | 2      | 96    | 128     | 4096  | 0.289M     | 0.027M        |
| cpu-0.5m  | 4       | 48      | 4      | 128   | 128     | 4096  | 0.504M     | 0.111M        |
| cpu-1m    | 4       | 80      | 4      | 224   | 128     | 4096  | 0.974M     | 0.318M        |
| cpu-2m    | 4       | 128     | 4      | 384   | 128     | 4096  | 1.902M     | 0.853M        |
| cpu-3m    | 6       | 160     | 4      | 448   | 128     | 4096  | 3.217M     | 1.907M        |
| cpu-8m    | 8       | 256     | 4      | 640   | 256     | 4096  | 8.131M     | 6.034M        |
| cpu-30m   | 8       | 512     | 8      | 1408  | 256     | 4096  | 29.893M    | 25.699M       |
| cpu-ne27k | 2       | 32      | 2      | 96    | 128     | 512   | 0.060M     | 0.027M        |
| cpu-ne83k | 3       | 48      | 4      | 128   | 128     | 512   | 0.132M     | 0.083M        |
| cpu-ne200k| 4       | 64      | 4      | 176   | 128     | 512   | 0.267M     | 0.201M        |
| cpu-ne440k| 4       | 96      | 4      | 256   | 128     | 512   | 0.542M     | 0.443M        |
| cpu-ne1m  | 5       | 128     | 4      | 352   | 128     | 512   | 1.136M     | 1.005M        |
| 99m       | 16      | 512     | 8      | 1408  | 2048    | 50304 | 102.9M     | 51.4M         |
| 560m      | 24      | 1024    | 16     | 4864  | 2048    | 50304 | 562.3M     | 459.3M        |
| 1b        | 24      | 1792    | 28     | 3968  | 2048    | 50304 | 1000.6M    | 820.3M        |
| 3b        | 30      | 3072    | 24     | 5632  | 2048    | 50304 | 2998.9M    | 2689.8M       |
| 6b        | 32      | 4096    | 32     | 8704  | 2048    | 50304 | 5982.4M    | 5570.3M       |

Notes on the widths: 99m uses Llama's rule (8/3 * d_model rounded up to a multiple of 128). The
paper's 560m shape (24 x 1024) needs a wide MLP (4.75 * d_model) to reach 560M at this vocabulary,
and its 1b/3b/6b shapes need narrower ones (1.8-2.2 * d_model). Llama-2-7B's width 11008 on the 6b
shape would give 6.89B here (6.74B at Llama-2's vocabulary of 32000). With Llama-3's vocabulary
(128256) the embeddings alone of 99m would exceed 99M; `estimate_parameters(cfg, vocab)` gives the
count at any vocabulary.

Counting convention (matches `mer/compute/flops.py`): "non-embedding" excludes the input embedding and the
output projection (lm head), whose cost is counted separately in the FLOPs as `6 * d_model * vocab`.
A tied embedding is counted once in the total.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from transformers import LlamaConfig, LlamaForCausalLM


@dataclass
class ModelConfig:
    """Shape of a Llama-architecture model. The vocabulary size comes from the tokenizer."""

    name: str = "cpu-2m"
    """Preset name (a key of `PRESETS`), or `custom` for a shape of your own; recorded in the run. A name never
    contradicts the shape: `custom`, and a preset whose architecture fields (`ARCHITECTURE_FIELDS`) are overridden
    (`model=cpu-2m model.d_model=144`), are renamed to their shape's label (`shape_label`: custom-L4-d144-h4-ff384)."""
    n_layer: int = 4
    """Number of transformer blocks."""
    d_model: int = 128
    """Hidden size (width of the residual stream)."""
    n_head: int = 4
    """Number of attention (query) heads; `d_model` must be divisible by it."""
    n_kv_head: int | None = None
    """Number of key/value heads (grouped-query attention); None means `n_head` (full multi-head)."""
    d_ff: int = 384
    """Intermediate size of the SwiGLU MLP (each of gate, up and down projections is d_model x d_ff)."""
    seq_len: int = 128
    """Context length in tokens: the length of one training block (and RoPE's max position)."""
    rope_theta: float = 10000.0
    """Base of the rotary position embedding frequencies."""
    tie_embeddings: bool = False
    """Share the input embedding matrix with the output projection."""
    init_std: float = 0.02
    """Standard deviation of the normal initialisation of every linear and embedding weight."""
    norm_eps: float = 1e-5
    """Epsilon of the RMSNorm layers."""
    init_from: str | None = None
    """A local directory holding a Hugging Face Llama-family causal LM (save_pretrained: config.json and
    safetensors weights, any dtype) to continue pre-training instead of building the shape above from random
    weights. Its architecture replaces every shape field (only seq_len, the training block length, stays
    yours and must not exceed the model's max_position_embeddings), a preset `name` becomes the directory's
    name, and its tokenizer replaces the trained BPE unless data.tokenizer.path is given (`mer.model.pretrained`)."""

    def __post_init__(self) -> None:
        if self.init_from is not None:
            self._take_pretrained_shape()
            return  # the loaded architecture was checked by transformers when it was saved
        for field in ("n_layer", "d_model", "n_head", "d_ff", "seq_len"):
            value = getattr(self, field)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"model.{field}={value!r}: must be a positive integer; fix the model config")
        if self.d_model % self.n_head != 0:
            raise ValueError(
                f"model.n_head={self.n_head}: d_model={self.d_model} is not divisible by it; "
                f"choose n_head dividing d_model"
            )
        if (self.d_model // self.n_head) % 2 != 0:
            raise ValueError(
                f"model.n_head={self.n_head}: head dim d_model/n_head={self.d_model // self.n_head} is odd "
                f"and RoPE needs an even one; choose n_head so that d_model/n_head is even"
            )
        if self.n_kv_head is not None and (
            not isinstance(self.n_kv_head, int) or self.n_kv_head <= 0 or self.n_head % self.n_kv_head != 0
        ):
            raise ValueError(
                f"model.n_kv_head={self.n_kv_head!r}: must be a positive divisor of n_head={self.n_head} "
                f"(or null for full multi-head attention)"
            )
        if not 0 < self.rope_theta < math.inf:
            raise ValueError(f"model.rope_theta={self.rope_theta!r}: must be > 0, e.g. 10000")
        if not 0 < self.init_std < math.inf:
            raise ValueError(f"model.init_std={self.init_std!r}: must be > 0, e.g. 0.02")
        if not 0 < self.norm_eps < math.inf:
            raise ValueError(f"model.norm_eps={self.norm_eps!r}: must be > 0, e.g. 1e-5")
        if self.name == "custom" or self.name.startswith("custom-") or _overrides_preset_shape(self):
            # The analysis and every reader group runs by this name: a preset name on another shape would pool
            # different models under one size (issue 19), so the name follows the shape.
            self.name = shape_label(self)

    def _take_pretrained_shape(self) -> None:
        """Replace the shape by init_from's architecture; raises ValueError for a directory that is not a model
        the trainer can train, or a seq_len longer than the model's positions."""
        from mer.model.pretrained import check_model_directory, max_positions, shape_of

        config = check_model_directory(self.init_from)
        for key, value in shape_of(config).items():
            setattr(self, key, value)
        if self.name in PRESETS:  # the model group's default name would label the run with a shape it does not have
            self.name = Path(self.init_from).expanduser().resolve().name
        if not isinstance(self.seq_len, int) or isinstance(self.seq_len, bool) or self.seq_len <= 0:
            raise ValueError(f"model.seq_len={self.seq_len!r}: must be a positive integer")
        limit = max_positions(config)
        if limit is not None and self.seq_len > limit:
            raise ValueError(f"model.seq_len={self.seq_len} is longer than the {limit} positions of the model in "
                             f"model.init_from={self.init_from!r} (max_position_embeddings); use "
                             f"model.seq_len<={limit}")

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_head

    @property
    def kv_heads(self) -> int:
        """Number of key/value heads actually used (`n_kv_head`, defaulting to `n_head`)."""
        return self.n_head if self.n_kv_head is None else self.n_kv_head


ARCHITECTURE_FIELDS = ("n_layer", "d_model", "n_head", "n_kv_head", "d_ff", "tie_embeddings")
"""The fields that make a model's architecture (and its parameter count at a given vocabulary). seq_len, rope_theta,
init_std and norm_eps change how it trains, not what it is, so a preset keeps its name under them."""


def shape_label(cfg: ModelConfig) -> str:
    """The name of a custom shape, from its architecture fields: custom-L<layers>-d<width>-h<heads>[-kv<kv heads>]
    -ff<SwiGLU width>[-tied]."""
    label = f"custom-L{cfg.n_layer}-d{cfg.d_model}-h{cfg.n_head}"
    if cfg.n_kv_head is not None and cfg.n_kv_head != cfg.n_head:
        label += f"-kv{cfg.n_kv_head}"
    label += f"-ff{cfg.d_ff}"
    return label + ("-tied" if cfg.tie_embeddings else "")


def _overrides_preset_shape(cfg: ModelConfig) -> bool:
    """Whether `cfg` carries a preset's name on another architecture (False while the presets are being built)."""
    preset = globals().get("PRESETS", {}).get(cfg.name)
    return preset is not None and _architecture(cfg) != _architecture(preset)


def _architecture(cfg: ModelConfig) -> tuple:
    """The values of `ARCHITECTURE_FIELDS`, with n_kv_head=null read as n_head (the same attention)."""
    return tuple(cfg.kv_heads if f == "n_kv_head" else getattr(cfg, f) for f in ARCHITECTURE_FIELDS)


def _preset(name: str, n_layer: int, d_model: int, n_head: int, d_ff: int, seq_len: int) -> ModelConfig:
    return ModelConfig(name=name, n_layer=n_layer, d_model=d_model, n_head=n_head, d_ff=d_ff, seq_len=seq_len)


PRESETS: dict[str, ModelConfig] = {
    cfg.name: cfg
    for cfg in (
        # CPU ladder (sizes at vocab 4096); cpu-0.3m..cpu-3m share seq_len 128 (`CPU_SCALING_LADDER`).
        _preset("cpu-0.3m", 2, 32, 2, 96, 128),
        _preset("cpu-0.5m", 4, 48, 4, 128, 128),
        _preset("cpu-1m", 4, 80, 4, 224, 128),
        _preset("cpu-2m", 4, 128, 4, 384, 128),
        _preset("cpu-3m", 6, 160, 4, 448, 128),
        _preset("cpu-8m", 8, 256, 4, 640, 256),
        _preset("cpu-30m", 8, 512, 8, 1408, 256),
        # Small-vocabulary ladder (`SMALL_VOCAB_LADDER`), named by NON-embedding parameters, which do not depend
        # on the vocabulary: at vocabulary 512 the embeddings are a small share and size means depth and width.
        _preset("cpu-ne27k", 2, 32, 2, 96, 128),
        _preset("cpu-ne83k", 3, 48, 4, 128, 128),
        _preset("cpu-ne200k", 4, 64, 4, 176, 128),
        _preset("cpu-ne440k", 4, 96, 4, 256, 128),
        _preset("cpu-ne1m", 5, 128, 4, 352, 128),
        # The paper's ladder (sizes at vocab 50304).
        _preset("99m", 16, 512, 8, 1408, 2048),
        _preset("560m", 24, 1024, 16, 4864, 2048),
        _preset("1b", 24, 1792, 28, 3968, 2048),
        _preset("3b", 30, 3072, 24, 5632, 2048),
        _preset("6b", 32, 4096, 32, 8704, 2048),
    )
}
"""Named model shapes; the vocabulary at which each size is quoted is in `PRESET_VOCAB`."""

CPU_SCALING_LADDER: tuple[str, ...] = ("cpu-0.3m", "cpu-0.5m", "cpu-1m", "cpu-2m", "cpu-3m")
"""The sizes of `+sweep=replay_vs_scale`: one seq_len (128), one tokenizer, 27k to 1.9M non-embedding
parameters (1.85 decades), each small enough for a 2-core machine."""

SMALL_VOCAB_LADDER: tuple[str, ...] = ("cpu-ne27k", "cpu-ne83k", "cpu-ne200k", "cpu-ne440k", "cpu-ne1m")
"""The sizes of `+sweep=size_matters` (vocabulary 512): one seq_len (128), 27k to 1.0M non-embedding parameters
(1.57 decades); each name is its non-embedding count."""

PRESET_VOCAB: dict[str, int] = {name: 512 if name in SMALL_VOCAB_LADDER else 4096 if name.startswith("cpu-") else 50304
                                for name in PRESETS}
"""Vocabulary size at which each preset is quoted in the module table: for the CPU and paper ladders the total
parameter count matches the name there; the small-vocabulary ladder is named by its non-embedding count, which
holds at any vocabulary (512 is the vocabulary of its study)."""


def get_preset(name: str, **overrides) -> ModelConfig:
    """The preset `name`, with any field replaced by `overrides` (e.g. `seq_len=512`)."""
    if name not in PRESETS:
        raise ValueError(f"model.name={name!r}: unknown preset; choose one of {sorted(PRESETS)}")
    return replace(PRESETS[name], **overrides)


def estimate_parameters(cfg: ModelConfig, vocab_size: int) -> tuple[int, int]:
    """(total, non_embedding) parameter counts of `build_model(cfg, vocab_size)`, computed analytically.

    Per block: q and o projections d*d each, k and v d*(n_kv_head*head_dim) each, SwiGLU
    3*d*d_ff, two RMSNorm gains d each; plus the final norm d. Embeddings: vocab*d for the input
    and, unless tied, vocab*d for the output projection. No biases.
    """
    d, kv_dim = cfg.d_model, cfg.kv_heads * cfg.head_dim
    per_layer = 2 * d * d + 2 * d * kv_dim + 3 * d * cfg.d_ff + 2 * d
    non_embedding = cfg.n_layer * per_layer + d
    embedding = vocab_size * d * (1 if cfg.tie_embeddings else 2)
    return non_embedding + embedding, non_embedding


def llama_config(cfg: ModelConfig, vocab_size: int) -> LlamaConfig:
    """The Hugging Face config of the model (no hub access)."""
    if not isinstance(vocab_size, int) or vocab_size <= 0:
        raise ValueError(f"vocab_size={vocab_size!r}: must be a positive integer (the tokenizer's size)")
    return LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=cfg.d_model,
        intermediate_size=cfg.d_ff,
        num_hidden_layers=cfg.n_layer,
        num_attention_heads=cfg.n_head,
        num_key_value_heads=cfg.kv_heads,
        hidden_act="silu",
        max_position_embeddings=cfg.seq_len,
        initializer_range=cfg.init_std,
        rms_norm_eps=cfg.norm_eps,
        rope_parameters={"rope_type": "default", "rope_theta": float(cfg.rope_theta)},
        tie_word_embeddings=cfg.tie_embeddings,
        attention_bias=False,
        mlp_bias=False,
        use_cache=False,  # training only; no KV cache
        bos_token_id=None,
        eos_token_id=None,
        pad_token_id=None,
    )


def build_model(cfg: ModelConfig, vocab_size: int) -> LlamaForCausalLM:
    """A freshly initialised fp32 `LlamaForCausalLM` with SDPA attention.

    Initialisation follows transformers (normal(0, init_std) for linear and embedding weights,
    ones for norms) and is seeded by the caller's `torch.manual_seed`. Build under
    `torch.device("meta")` to get the shapes of a large model without allocating it.
    """
    model = LlamaForCausalLM._from_config(llama_config(cfg, vocab_size), attn_implementation="sdpa")
    return model


def count_parameters(model: torch.nn.Module) -> tuple[int, int]:
    """(total, non_embedding) parameter counts of a built model.

    `total` counts every parameter once (a tied embedding once). `non_embedding` excludes the
    input embedding and the output projection (the lm head), as in the FLOP formula of
    `mer/compute/flops.py`. Works on meta-device models.
    """
    excluded: set[int] = set()
    get_in, get_out = getattr(model, "get_input_embeddings", None), getattr(model, "get_output_embeddings", None)
    for module in (get_in() if get_in else None, get_out() if get_out else None):
        if module is not None:
            excluded.update(id(p) for p in module.parameters())
    total = non_embedding = 0
    for p in model.parameters():  # parameters() yields a shared (tied) tensor once
        total += p.numel()
        if id(p) not in excluded:
            non_embedding += p.numel()
    return total, non_embedding
