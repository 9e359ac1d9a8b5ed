"""Entry point: `python -m mer.run [overrides]` trains one run; `-m` sweeps (Hydra).

Only assembles and calls: config -> validated dataclass -> run name -> `run_training`.
"""

from __future__ import annotations

import logging
import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from mer.config import RunConfig, register_configs, to_dataclass
from mer.run_dir import run_name_from_overrides
from sweeps.plugins import register_hydra_plugins

register_configs()
# The sweeper, launchers and sweep presets (hydra_plugins.mer_sweeps, sweeps/): registered explicitly,
# because Hydra's plugin scan cannot list a namespace package installed in editable mode.
register_hydra_plugins()
log = logging.getLogger("mer.run")


@hydra.main(config_path="pkg://mer.conf", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> dict:
    run_cfg = to_dataclass(cfg, RunConfig)  # every check runs here, before any work
    if run_cfg.threads is not None:
        import torch

        torch.set_num_threads(run_cfg.threads)
    name = run_cfg.run_name or run_name_from_overrides(list(HydraConfig.get().overrides.task))
    resolved = OmegaConf.to_container(cfg, resolve=True)
    from mer.data.corpus import DataError
    from mer.runner import RunConfigMismatch, run_training
    from mer.trainer import TrainingStopped

    try:
        return run_training(run_cfg, name, resolved)
    except (DataError, RunConfigMismatch, TrainingStopped) as error:
        log.error("%s", error)
        sys.exit(143 if "signal" in str(error) else 2)


if __name__ == "__main__":
    main()
