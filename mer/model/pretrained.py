"""Continue pre-training a Hugging Face model: `model.init_from=<local directory>` checked, read and loaded.

The directory is what `save_pretrained` writes (config.json, safetensors weights in any dtype, usually
the tokenizer too). Everything that can be refused is refused while the config is checked, before any
data is read (`check_model_directory` from `ModelConfig`, `check_tokenizer` from `RunConfig`):

- a path that is not a directory, or a directory without config.json or without weights: not a model;
- a weight file that is missing, unreadable or truncated (`mer.model.weight_files`; the command also reads
  every weight for NaN and inf before it starts);
- an architecture the trainer cannot train, named: the trainer needs a decoder-only causal LM whose blocks
  are `.model.layers` (FSDP shards them), whose forward takes `logits_to_keep` and that runs with SDPA
  attention and without a cache: the Llama family in `TRAINABLE_ARCHITECTURES`;
- a tokenizer that has more tokens than the model has embedding rows (its ids would index past the
  embedding table; fewer tokens than rows is the usual padding and is accepted), or none at all.

The model's own tokenizer replaces the trained BPE (`data.tokenizer.path` is set to the model directory
unless given), the shape fields of `model` are replaced by the loaded architecture's (so FLOPs, MFU and
parameter counts follow it), and the weights are loaded as fp32 master weights whatever their stored
dtype. Nothing here touches a network: every load is `local_files_only`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from mer.model.weight_files import check_weight_files

TRAINABLE_ARCHITECTURES: tuple[str, ...] = ("LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM",
                                            "Qwen3ForCausalLM")
"""Llama-family decoders (RMSNorm, RoPE, gated MLP, `.model.layers`) the trainer, FSDP and export handle."""
_BY_MODEL_TYPE = {"llama": "LlamaForCausalLM", "mistral": "MistralForCausalLM", "qwen2": "Qwen2ForCausalLM",
                  "qwen3": "Qwen3ForCausalLM"}
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "tokenizer_config.json")


def check_model_directory(path: str) -> dict[str, Any]:
    """The config.json of the model in `path`; raises ValueError naming the fix when it is not one the trainer
    can continue pre-training (module docstring)."""
    directory = Path(path).expanduser()
    where = f"model.init_from={path!r}"
    if not directory.is_dir():
        raise ValueError(f"{where} is not a directory; give the folder a Hugging Face model was saved to with "
                         "save_pretrained (config.json and model.safetensors)")
    config_file = directory / "config.json"
    if not config_file.is_file():
        raise ValueError(f"{where} is not a model directory: it has no config.json; give the folder a Hugging Face "
                         "model was saved to with save_pretrained")
    try:
        config = json.loads(config_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{where}: its config.json is not valid JSON ({error})") from None
    if not isinstance(config, dict) or "model_type" not in config:
        raise ValueError(f"{where} is not a model directory: its config.json has no model_type (a tokenizer or "
                         "another library's folder?); give the folder written by the model's save_pretrained")
    if not any((directory / name).is_file() for name in WEIGHT_FILES):
        raise ValueError(f"{where} is not a model directory: it has a config.json but no weights "
                         f"({' or '.join(WEIGHT_FILES[:2])}); save the model with save_pretrained")
    check_weight_files(path)  # headers and sizes: a corrupted or truncated file is named now, not mid-load
    architecture = architecture_of(config)
    if architecture not in TRAINABLE_ARCHITECTURES:
        raise ValueError(f"{where} holds a {architecture} (model_type {config['model_type']!r}), which this trainer "
                         f"cannot train: it trains Llama-family decoders ({', '.join(TRAINABLE_ARCHITECTURES)})")
    return config


def architecture_of(config: dict[str, Any]) -> str:
    """The model class a config.json names (its first `architectures` entry, else from its model_type)."""
    architectures = config.get("architectures") or []
    if architectures:
        return str(architectures[0])
    return _BY_MODEL_TYPE.get(config["model_type"], f"model of type {config['model_type']!r}")


def shape_of(config: dict[str, Any]) -> dict[str, Any]:
    """The `ModelConfig` shape fields of a Llama-family config.json."""
    rope = config.get("rope_parameters") or {}
    heads = int(config["num_attention_heads"])
    return {
        "n_layer": int(config["num_hidden_layers"]),
        "d_model": int(config["hidden_size"]),
        "n_head": heads,
        "n_kv_head": int(config.get("num_key_value_heads") or heads),
        "d_ff": int(config["intermediate_size"]),
        "rope_theta": float(rope.get("rope_theta", config.get("rope_theta", 10000.0))),
        "tie_embeddings": bool(config.get("tie_word_embeddings", False)),
        "init_std": float(config.get("initializer_range", 0.02)),
        "norm_eps": float(config.get("rms_norm_eps", 1e-6)),
    }


def max_positions(config: dict[str, Any]) -> int | None:
    """The longest sequence the model was built for (config.json's max_position_embeddings), if it says."""
    value = config.get("max_position_embeddings")
    return int(value) if value else None


def check_tokenizer(model_path: str, tokenizer_path: str | None) -> str:
    """The tokenizer directory a run from `model_path` uses (`tokenizer_path`, else the model's own); raises
    ValueError when there is none or its vocabulary does not fit the model's embeddings (module docstring)."""
    from transformers import AutoTokenizer

    model_dir = Path(model_path).expanduser()
    if tokenizer_path is None:
        if not any((model_dir / name).is_file() for name in TOKENIZER_FILES):
            raise ValueError(f"model.init_from={model_path!r} has no tokenizer (no tokenizer.json or tokenizer.model); "
                             "save the model's tokenizer there with save_pretrained, or give data.tokenizer.path")
        tokenizer_path = model_path
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(Path(tokenizer_path).expanduser()), local_files_only=True)
    except Exception as error:  # transformers raises OSError/ValueError/... depending on what is missing
        raise ValueError(f"cannot load the tokenizer in {tokenizer_path!r} for model.init_from={model_path!r}: "
                         f"{error}") from None
    rows = int(json.loads((model_dir / "config.json").read_text())["vocab_size"])
    if len(tokenizer) > rows:
        raise ValueError(f"the tokenizer in {tokenizer_path!r} has {len(tokenizer):,} tokens but the model in "
                         f"model.init_from={model_path!r} has {rows:,} embedding rows (vocab_size): token ids past "
                         f"{rows - 1} have no embedding. Use the tokenizer the model was trained with "
                         "(data.tokenizer.path=null takes the one in the model directory)")
    return tokenizer_path


def load_pretrained(path: str, device: torch.device) -> torch.nn.Module:
    """The model in `path` as fp32 weights on `device`, with SDPA attention and no KV cache, in training mode.

    Raises ValueError when the weights do not cover the architecture (transformers would initialise the
    missing tensors at random and continue from a model that was never trained)."""
    from transformers import AutoModelForCausalLM

    model, info = AutoModelForCausalLM.from_pretrained(
        str(Path(path).expanduser()), dtype=torch.float32, attn_implementation="sdpa", local_files_only=True,
        output_loading_info=True,
    )
    missing = list(info.get("missing_keys") or [])
    if missing:
        raise ValueError(f"model.init_from={path!r}: the weights lack {len(missing)} tensor(s) of the architecture "
                         f"({', '.join(sorted(missing)[:5])}...); save the complete model with save_pretrained")
    model.config.use_cache = False  # training only; an export turns it back on
    return model.to(device).train()
