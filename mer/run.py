"""Entry point: `python -m mer.run [overrides]` trains one run; `-m` sweeps (Hydra).

Only assembles and calls: config -> validated dataclass -> run name -> `run_training`.

A job that cannot run ends differently in a single run and in a multirun (`-m`): a single run prints the
reason and exits with code 2; a multirun job raises instead (a `sys.exit` inside a job would end the whole
multirun), so the sweeper records the failure and runs the other points. A config refused by the check is
recorded as status "refused" in the point's summary.json (mer.rundir.refusal). A run directory owned by another live
process (mer.rundir.lock) and a full disk end the same way, with one line naming the holder or the disk. Exit code
143 (a signal stopped the run, status "stopped") stays an exit in both: it means "stop, requeue", not "this
point failed".
"""

from __future__ import annotations

import dataclasses
import logging
import sys
from pathlib import Path
from typing import NoReturn

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from mer.config.run_config import RunConfig, register_configs, to_dataclass
from mer.config.run_name import run_name_problem
from mer.config.usage_errors import run_hydra_main
from mer.rundir.layout import run_name_from_overrides
from mer.rundir.refusal import RunRefused, record_refusal
from mer.signals import stop_request
from sweeps.plugins import register_hydra_plugins

register_configs()
# The sweeper, launchers and sweep presets (hydra_plugins.mer_sweeps, sweeps/): registered explicitly,
# because Hydra's plugin scan cannot list a namespace package installed in editable mode.
register_hydra_plugins()
log = logging.getLogger("mer.run")


@hydra.main(config_path="pkg://mer.conf", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> dict:
    multirun = HydraConfig.get().mode == RunMode.MULTIRUN
    name = cfg.run_name or run_name_from_overrides(list(HydraConfig.get().overrides.task))
    try:
        run_cfg = to_dataclass(cfg, RunConfig)  # every check runs here, before any work
    except ValueError as error:
        refuse(cfg, name, str(error), multirun)
    if run_cfg.threads is not None:
        import torch

        torch.set_num_threads(run_cfg.threads)
    if run_cfg.plan:  # what the run would cost; nothing trained or written (docs/plan.md)
        from mer.plan.entry import print_plan

        return print_plan(run_cfg, name)
    from mer.plan.fit import fit_refusal

    refusal = fit_refusal(run_cfg, name)  # estimated memory and time against the device, before any work
    if refusal is not None:
        refuse(cfg, name, refusal, multirun)
    if run_cfg.model.init_from is not None:  # NaN or inf weights: the base model is broken (mer.model.weight_files)
        from mer.model.weight_files import check_finite_weights

        try:
            check_finite_weights(run_cfg.model.init_from)
        except ValueError as error:
            refuse(cfg, name, str(error), multirun)
    resolved = OmegaConf.to_container(cfg, resolve=True)
    if run_cfg.model.init_from is not None:  # what the run trains: the loaded architecture and its tokenizer
        resolved["model"] = dataclasses.asdict(run_cfg.model)
        resolved["data"]["tokenizer"]["path"] = run_cfg.data.tokenizer.path
    from mer.data.corpus import DataError
    from mer.evaluation.harness import HarnessError
    from mer.files.atomic import DiskFull
    from mer.launch.runner import RunConfigMismatch, run_training
    from mer.rundir.integrity import RunDirectoryDamaged
    from mer.rundir.lock import RunDirLocked, RunDirLockUnsupported, RunDirUnusable
    from mer.training.trainer import TrainingStopped

    if stop_request.requested() is not None:  # the sweep was asked to stop before this job began: start nothing
        log.error("not started: the sweep is stopping (signal %d)", stop_request.requested())
        sys.exit(stop_request.STOPPED_BY_SIGNAL)
    try:
        summary = run_training(run_cfg, name, resolved)
    except (DataError, RunConfigMismatch, TrainingStopped, HarnessError, RunDirectoryDamaged, RunDirLocked,
            RunDirLockUnsupported, RunDirUnusable, DiskFull) as error:
        log.error("%s", error)
        if isinstance(error, TrainingStopped) and "signal" in str(error):
            sys.exit(143)  # checkpointed: the launcher requeues, the sweep stops (resumed when launched again)
        if multirun:
            raise  # the sweeper records the failure (and its table the reason) and goes on
        sys.exit(2)
    from mer.parallel.distributed import world_from_env

    if not multirun and world_from_env().rank == 0:  # a sweep says it once, under its table
        from mer.rundir.next_steps import run_next_steps

        print(run_next_steps(Path(run_cfg.runs_dir).expanduser() / name), flush=True)
    return summary


def refuse(cfg: DictConfig, name: str, reason: str, multirun: bool) -> NoReturn:
    """End a job whose config the check refused: recorded and raised in a multirun, exit 2 otherwise."""
    if not multirun:
        print(f"refused: {reason}", file=sys.stderr, flush=True)  # the reason alone, no traceback
        sys.exit(2)
    log.error("refused: %s", reason)
    if cfg.get("plan"):
        raise RunRefused(reason)  # a plan writes no run directory, not even a refusal
    if run_name_problem(name) is not None:  # the refused run_name itself: recording it would write outside runs_dir
        raise RunRefused(reason)
    run_dir = Path(str(cfg.runs_dir)).expanduser() / name
    if not record_refusal(run_dir, name, reason):
        log.warning("%s already holds a run's summary.json, or a live run owns it; the refusal is not recorded there",
                    run_dir)
    raise RunRefused(reason)


if __name__ == "__main__":
    run_hydra_main(main, RunConfig)  # a bad override: one message, exit code 2 (mer.config.usage_errors)
