"""What a task boundary leaves besides its evaluation: the task's model as a Hugging Face folder
(`export_each_task`) and its downstream scores (`eval.downstream`)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from mer.compute.flops import FlopCounter
from mer.config.run_config import RunConfig
from mer.parallel.distributed import Distributed
from mer.parallel.sharding import check_parallel

if TYPE_CHECKING:  # imported only where eval.downstream is on (mer.training.trainer)
    from mer.training.downstream_live import LiveDownstream

log = logging.getLogger(__name__)


def live_downstream(cfg: RunConfig, dist: Distributed, run_dir: Path, tokenizer_dir: Path | None,
                    task_folders: Sequence[Path]) -> LiveDownstream | None:
    """What scores the live model at task boundaries (eval.downstream), None when off; refused under FSDP."""
    if not cfg.eval.downstream:
        return None
    if check_parallel(cfg.parallel, dist.device, dist.world_size, cfg.fsdp_on_cpu):
        raise ValueError("eval.downstream scores the model on rank 0 alone, which a sharded model "
                         "(parallel=fsdp) cannot do: train with export_each_task=true and score the "
                         "exported models afterwards with `python -m mer.downstream RUN_DIR --tasks ...`")
    from mer.training.downstream_live import LiveDownstream

    return LiveDownstream(cfg, run_dir, tokenizer_dir, task_folders)  # checks the task names


def export_task_model(model: torch.nn.Module, cfg: RunConfig, run_dir: Path, tokenizer_dir: Path | None,
                      task_names: list[str], task_name: str, losses: dict[str, float], sharded: bool,
                      dist: Distributed) -> None:
    """Keep the model of this task boundary as a Hugging Face folder, `models/after_<task>/` (export_each_task).

    Under FSDP every rank takes part in gathering the whole weights onto rank 0 (on the host), which writes
    them; the others wait. Written atomically (`mer.hf.export.write_hf_model`)."""
    from mer.hf.export import task_model_dir, write_hf_model
    from mer.hf.model_card import model_card
    from mer.hf.run_files import kept_base_model

    state = None
    if sharded:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        state = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    if dist.is_main:
        if tokenizer_dir is None:
            raise ValueError("export_each_task needs the tokenizer's folder (Trainer(tokenizer_dir=...))")
        card = model_card(run_dir.name, asdict(cfg), task_names, task_name, losses, model_type=model.config.model_type)
        write_hf_model(task_model_dir(run_dir, task_name), model.config, tokenizer_dir, card,
                       model=None if sharded else model, state_dict=state, generation_dir=kept_base_model(run_dir))
        log.info("task %s: model kept in %s", task_name, task_model_dir(run_dir, task_name))
    dist.barrier()


def score_downstream(downstream: LiveDownstream, model: torch.nn.Module, task_names: list[str], task_name: str,
                     step: int, bf16: bool, dist: Distributed, flops: FlopCounter,
                     append: Callable[[dict], None] | None = None, base_record: dict | None = None) -> None:
    """eval.downstream at the end of `task_name`: rank 0 scores the live model; the others wait. The tokens it
    forwarded count as evaluation FLOPs on every rank. `append` (rank 0's metrics.jsonl, None elsewhere) gets the
    scores as one record made from `base_record` (`scores_record`), so the experiment trackers show them."""
    forwarded = torch.zeros((), dtype=torch.float64, device=dist.device)
    if dist.is_main:
        forwarded += downstream.score(model, task_name, task_names.index(task_name), step, bf16)
        model.train()
    flops.add_eval(int(dist.sum(forwarded).item()))
    if append is not None and downstream.scores:
        from mer.training.downstream_live import scores_record

        append(scores_record(base_record or {"step": step, "task": task_name,
                                             "task_index": task_names.index(task_name)}, downstream.scores))
