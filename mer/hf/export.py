"""Hugging Face out: a run's model as a `save_pretrained` folder that transformers and the harness load.

    python -m mer.export RUN_DIR --out DIR [--after-task NAME] [--dtype float32|bfloat16|float16]

writes DIR with the model (safetensors), its config and generation config, the run's tokenizer and a
model card (README.md: settings, task sequence, held-out losses), so that
`AutoModelForCausalLM.from_pretrained(DIR)` and `AutoTokenizer.from_pretrained(DIR)` give the trainer's
model: in float32 (the default) the logits are the trainer's, bit for bit.

Without `--after-task` the model is the run's latest checkpoint (the final model once the run is completed;
a run still going is exported at its last checkpoint, and the command says so). `--after-task NAME` takes the
model kept at the end of task NAME, which exists only for runs trained with `export_each_task=true`
(`models/after_<task>/`, the same kind of folder, written by the trainer at every task boundary).

Every folder is written to a temporary name beside its destination and renamed into place, so a
reader never sees half a model. Exit status 2, with the reason, when the run cannot be exported.
"""

from __future__ import annotations

import argparse
import copy
import os
import shutil
import sys
import warnings
from pathlib import Path
from typing import Any

import torch

from mer.files.atomic import publish_directory

MODELS_DIR = "models"
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class ExportError(ValueError):
    """The run cannot be exported (no checkpoint, no such task, the tokenizer or base model is gone)."""


def task_model_dir(run_dir: Path, task: str) -> Path:
    """Where `export_each_task=true` keeps the model taken at the end of `task`."""
    return run_dir / MODELS_DIR / f"after_{task}"


def exported_models(run_dir: Path, tasks: list[str]) -> dict[str, str]:
    """task -> folder (relative to the run directory) of every per-task model the run directory holds."""
    return {t: str(task_model_dir(run_dir, t).relative_to(run_dir)) for t in tasks
            if (task_model_dir(run_dir, t) / "config.json").is_file()}


def _skeleton(config) -> torch.nn.Module:
    """An unallocated model of `config` (meta tensors) to load a state dict into with assign=True."""
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(config, attn_implementation="sdpa")


def write_hf_model(out: Path, config, tokenizer_dir: Path, card: str, model: torch.nn.Module | None = None,
                   state_dict: dict[str, torch.Tensor] | None = None, dtype: torch.dtype = torch.float32,
                   generation_dir: Path | None = None) -> Path:
    """Write a save_pretrained folder at `out` atomically: the weights of `model` (or `state_dict`, whole tensors,
    loaded into a model of `config`) in `dtype`, the config ready for inference (KV cache on; the special-token
    ids `config` has, the tokenizer's where it has none), the generation config of `generation_dir` (the base
    model's, which holds its sampling settings and end-of-text ids) or else one made from the config, the tokenizer
    in `tokenizer_dir` and `card` as README.md."""
    from transformers import AutoTokenizer, GenerationConfig

    if model is None and state_dict is None:
        raise ValueError("write_hf_model needs a model or a state dict")
    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir), local_files_only=True)
    if len(tokenizer) > int(config.vocab_size):
        raise ExportError(f"the tokenizer in {tokenizer_dir} has {len(tokenizer):,} tokens but the model has "
                          f"{int(config.vocab_size):,} embedding rows: it is not the tokenizer the model was trained "
                          "with; restore that one")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    if model is None or dtype != torch.float32:
        source = model.state_dict() if model is not None else state_dict
        skeleton = _skeleton(config)
        skeleton.load_state_dict({k: v.detach().to("cpu", dtype) for k, v in source.items()}, assign=True)
        skeleton.tie_weights()  # assign=True gives the head its own tensor; a tied model shares one again
        model = skeleton
    model.save_pretrained(str(staging), safe_serialization=True)
    saved = copy.deepcopy(config)
    saved.use_cache = True  # the trainer turns the KV cache off; generation wants it
    saved.dtype = dtype
    for name in ("bos_token_id", "eos_token_id", "pad_token_id"):
        # A base model's ids stay (Llama 3 ends text with any of several ids); a model mer built has none.
        if getattr(saved, name, None) is None:
            setattr(saved, name, getattr(tokenizer, name))
    saved.save_pretrained(str(staging))
    if generation_dir is not None and (generation_dir / "generation_config.json").is_file():
        generation = GenerationConfig.from_pretrained(str(generation_dir), local_files_only=True)
    else:
        generation = GenerationConfig.from_model_config(saved)
    generation.save_pretrained(str(staging))
    tokenizer.save_pretrained(str(staging))
    (staging / "README.md").write_text(card, encoding="utf-8")
    publish_directory(staging, out)  # the old folder goes only once the new one is in place
    return out


def model_config(config: dict[str, Any], vocab_size: int, run_dir: Path | None = None):
    """The transformers config of a run's model: the base model's (model.init_from; the copy the run directory
    keeps, `mer.hf.run_files`, else the base folder's) or built from the shape."""
    from transformers import AutoConfig

    from mer.hf.run_files import kept_base_model
    from mer.model.llama import ModelConfig, llama_config

    model = dict(config["model"])
    if model.get("init_from"):
        base = (kept_base_model(run_dir) if run_dir is not None else None) or Path(model["init_from"]).expanduser()
        if not (base / "config.json").is_file():
            raise ExportError(f"the run continued pre-training {base}, whose config.json is gone; the export needs it "
                              "(restore the folder)")
        return AutoConfig.from_pretrained(str(base), local_files_only=True)
    return llama_config(ModelConfig(**model), vocab_size)


def base_generation_dir(config: dict[str, Any], run_dir: Path) -> Path | None:
    """Where the base model's generation_config.json is (the run directory's copy first); None from scratch."""
    from mer.hf.run_files import kept_base_model

    init_from = config["model"].get("init_from")
    return (kept_base_model(run_dir) or Path(init_from).expanduser()) if init_from else None


def tokenizer_dir(config: dict[str, Any], summary: dict[str, Any], run_dir: Path | None = None) -> Path:
    """The folder of the tokenizer a run was trained with: the copy its run directory keeps (checked against
    summary.json, `mer.hf.run_files`), else (older runs) data.tokenizer.path, checked against the run's
    tokenizer hash, or the cached BPE."""
    from mer.files.hashing import tokenizer_files_hash
    from mer.hf.run_files import RunFilesChanged, kept_tokenizer

    if run_dir is not None:
        try:
            kept = kept_tokenizer(run_dir, summary)
        except RunFilesChanged as error:
            raise ExportError(str(error)) from None
        if kept is not None:
            return kept
    data = config["data"]
    path = data["tokenizer"].get("path")
    folder = (Path(path).expanduser() if path else
              Path(data["data_dir"]).expanduser() / "tokenizers" / str(summary.get("tokenizer_hash")))
    if not folder.is_dir():
        raise ExportError(f"the run's tokenizer {folder} is gone; prepare the run's data again "
                          "(`python -m mer.data.prepare` with the same data settings) to rebuild it")
    recorded = summary.get("tokenizer_hash")
    if path and recorded and tokenizer_files_hash(folder) != recorded:  # a user tokenizer's hash is its files'
        raise ExportError(f"the tokenizer in {folder} has changed since the run was trained with it (tokenizer hash "
                          f"{tokenizer_files_hash(folder)}, summary.json records {recorded}); restore the tokenizer "
                          "the run was trained with")
    return folder


def _final_state(run_dir: Path) -> tuple[dict[str, torch.Tensor], int]:
    """The model weights of the run's latest checkpoint (gathered from its shards for parallel=fsdp), and its step."""
    from mer.parallel.sharding import SHARDED_DIR
    from mer.rundir.checkpoint import find_checkpoint, load_checkpoint

    checkpoint = find_checkpoint(run_dir)
    if checkpoint is None:
        raise ExportError(f"{run_dir} has no checkpoint: train the run first (python -m mer.run ...)")
    from mer.rundir.checkpoint_integrity import verify_checkpoint
    from mer.rundir.integrity import RunDirectoryDamaged

    try:
        verify_checkpoint(checkpoint.parent)  # flipped bits would export silently wrong weights
        state = load_checkpoint(checkpoint)
    except RunDirectoryDamaged as error:
        raise ExportError(str(error)) from None
    step = int(state["position"]["step"])
    if "model" in state:
        return state["model"], step
    from torch.distributed.checkpoint.state_dict_loader import _load_state_dict_from_keys

    # An FSDP checkpoint: the model's shards of every rank, read whole without a process group (which DCP warns
    # about: here that is the intent).
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="torch.distributed is unavailable or uninitialized")
        sharded = _load_state_dict_from_keys("model", checkpoint_id=str(checkpoint.parent / SHARDED_DIR))
    return sharded["model"], step


def export_run(run_dir: Path, out: Path, after_task: str | None = None, dtype: str = "float32") -> Path:
    """Export the run in `run_dir` to `out` (module docstring); raises ExportError with the fix when it cannot."""
    from mer.hf.model_card import model_card
    from mer.rundir.layout import read_config, read_summary

    read, summary = read_config(run_dir), read_summary(run_dir) or {}
    config = read.config
    if config is None:
        raise ExportError(f"{run_dir} is not a run directory ({'; '.join(read.problems)})")
    if dtype not in DTYPES:
        raise ExportError(f"--dtype {dtype}: choose one of {list(DTYPES)}")
    tasks = summary.get("tasks") or [t["name"] for t in config["data"]["tasks"]]
    if after_task is not None:
        source = task_model_dir(run_dir, after_task)
        if after_task not in tasks:
            raise ExportError(f"--after-task {after_task}: the run's tasks are {tasks}")
        if not (source / "config.json").is_file():
            kept = list(exported_models(run_dir, tasks))
            raise ExportError(f"{run_dir} holds no model taken after task {after_task!r} "
                              + (f"(it holds {kept})" if kept else "(it keeps none)")
                              + "; per-task models are kept by runs trained with export_each_task=true")
        if dtype == "float32":
            staging = out.with_name(f".{out.name}.tmp-{os.getpid()}")
            shutil.rmtree(staging, ignore_errors=True)
            out.parent.mkdir(parents=True, exist_ok=True)
            shutil.copytree(source, staging)
            publish_directory(staging, out)  # the old folder goes only once the new one is in place
            return out
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(str(source), dtype=torch.float32, local_files_only=True)
        return write_hf_model(out, model.config, source, (source / "README.md").read_text(encoding="utf-8"),
                              model=model, dtype=DTYPES[dtype], generation_dir=source)
    state, step = _final_state(run_dir)
    vocab_size = int(state["model.embed_tokens.weight"].shape[0])
    completed = summary.get("status") == "completed"
    if not completed:
        print(f"note: the run is {summary.get('status', 'not completed')}; exporting its checkpoint at step {step}",
              file=sys.stderr)
    losses = None
    if completed and summary.get("loss_matrix"):
        losses = dict(zip(tasks, summary["loss_matrix"][-1]))
    hf_config = model_config(config, vocab_size, run_dir)
    card = model_card(summary.get("run_name") or run_dir.name, config, tasks, None, losses,
                      summary if completed else None, model_type=hf_config.model_type)
    return write_hf_model(out, hf_config, tokenizer_dir(config, summary, run_dir), card, state_dict=state,
                          dtype=DTYPES[dtype], generation_dir=base_generation_dir(config, run_dir))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mer.export", description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path, help="the run directory (runs/<name>)")
    parser.add_argument("--out", type=Path, required=True, help="folder to write the model to (replaced if present)")
    parser.add_argument("--after-task", default=None, help="the model kept at the end of this task "
                        "(runs trained with export_each_task=true); default: the final model")
    parser.add_argument("--dtype", default="float32", choices=list(DTYPES), help="dtype of the saved weights")
    args = parser.parse_args(argv)
    try:
        out = export_run(args.run_dir, args.out, args.after_task, args.dtype)
    except ExportError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"exported {args.run_dir}{'' if args.after_task is None else ' after task ' + args.after_task} to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
