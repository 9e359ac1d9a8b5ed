"""Structured configs of MER's sweep plugins, stored in Hydra's ConfigStore when Hydra discovers plugins.

- `hydra/sweeper=mer_grid` (the default, chosen by conf/default_sweeper.yaml): Hydra's basic grid sweeper, run to the end with one
  table of every point (`MerGridSweeperConf`).
- `hydra/sweeper=mer_optuna`: the Optuna sweeper (`MerOptunaSweeperConf`), with its sampler chosen by
  `hydra/sweeper/sampler=tpe|random|grid|gp|nsgaii|qmc`.
- `hydra/launcher=mer_submitit_slurm` / `mer_submitit_local`: hydra-submitit-launcher's schemas with MER's
  launcher classes as targets; conf/hydra/launcher/submitit_{slurm,local}.yaml extend them.

This module is imported at every Hydra start (plugin discovery): it imports neither optuna nor submitit.
"""

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from hydra._internal.core_plugins.basic_sweeper import BasicSweeperConf
from hydra.core.config_store import ConfigStore

from hydra_plugins.hydra_submitit_launcher.config import LocalQueueConf, SlurmQueueConf

# ------------------------------------------------------------------------------------------- samplers


@dataclass
class TPESamplerConf:
    """Tree-structured Parzen estimator (Optuna's default; single- and multi-objective)."""

    _target_: str = "optuna.samplers.TPESampler"
    seed: Optional[int] = None
    n_startup_trials: int = 10
    multivariate: bool = False
    constant_liar: bool = True  # trials of one batch run together: avoid asking for the same point n_jobs times


@dataclass
class RandomSamplerConf:
    _target_: str = "optuna.samplers.RandomSampler"
    seed: Optional[int] = None


@dataclass
class GridSamplerConf:
    """Every combination of the choice()/range() values (intervals cannot be gridded).

    `search_space` null takes the grid from the sweep parameters."""

    _target_: str = "optuna.samplers.GridSampler"
    search_space: Optional[Dict[str, Any]] = None
    seed: Optional[int] = None


@dataclass
class GPSamplerConf:
    """Gaussian-process Bayesian optimisation (Optuna >= 3.6; uses torch and scipy, both installed)."""

    _target_: str = "optuna.samplers.GPSampler"
    seed: Optional[int] = None
    n_startup_trials: int = 10
    deterministic_objective: bool = False


@dataclass
class NSGAIISamplerConf:
    """NSGA-II, the usual multi-objective genetic algorithm."""

    _target_: str = "optuna.samplers.NSGAIISampler"
    seed: Optional[int] = None
    population_size: int = 50


@dataclass
class QMCSamplerConf:
    """Quasi-Monte Carlo (Sobol/Halton): space-filling, for a first look at a search space."""

    _target_: str = "optuna.samplers.QMCSampler"
    seed: Optional[int] = None
    qmc_type: str = "sobol"
    scramble: bool = True


SAMPLERS = {"tpe": TPESamplerConf, "random": RandomSamplerConf, "grid": GridSamplerConf, "gp": GPSamplerConf,
            "nsgaii": NSGAIISamplerConf, "qmc": QMCSamplerConf}

# ------------------------------------------------------------------------------------------- sweepers


@dataclass
class MerGridSweeperConf(BasicSweeperConf):
    """Hydra's basic sweeper (same keys: `params`, `max_batch_size`) that never stops at a failed point and
    ends with a table of every point (<sweep dir>/sweep_table.txt)."""

    _target_: str = "hydra_plugins.mer_sweeps.grid_sweeper.MerGridSweeper"


@dataclass
class MerOptunaSweeperConf:
    """An Optuna study run through Hydra's launchers, with Optuna's ask-and-tell API."""

    _target_: str = "hydra_plugins.mer_sweeps.optuna_sweeper.MerOptunaSweeper"
    _recursive_: bool = False  # the sweeper builds the sampler itself (the grid sampler needs the search space)
    defaults: List[Any] = field(default_factory=lambda: ["_self_", {"sampler": "tpe"}])

    sampler: Any = None
    """The sampler (chosen with hydra/sweeper/sampler=...); `seed` makes a study reproducible."""
    study_name: str = "mer"
    """A study is resumed by this name (`load_if_exists`) when the storage already holds it."""
    storage: Optional[str] = None
    """null or "sqlite": <sweep dir>/optuna.db; "journal": <sweep dir>/optuna.journal (Optuna's journal file
    storage, for shared file systems); "journal:<path>": a journal file elsewhere; anything else: an RDB URL."""
    direction: Any = "minimize"
    """minimize | maximize, or a list of them (one per objective) for a multi-objective study."""
    objectives: Optional[List[str]] = field(default_factory=lambda: ["metrics.retained_loss"])
    """Dotted paths into each job's return value (mer.run returns the run's summary.json), one per
    direction. null: the return value itself is the objective (a number or a list of numbers)."""
    n_trials: int = 20
    """Trials the study should hold once the sweep ends (finished trials already in the storage count)."""
    n_jobs: int = 1
    """Trials asked for, launched and told together: one launcher batch (e.g. one Slurm job array)."""
    params: Optional[Dict[str, str]] = None
    """The search space, e.g. {alpha: "interval(0, 0.5)"}; command-line sweeps win on the same key."""
    retry_interrupted: bool = True
    """On resume, trials left RUNNING by a killed sweeper are marked failed and asked again with the same
    parameters (their runs resume from their checkpoints). Set false when several sweepers share a study."""
    results_file: str = "best"
    """Base name of the results in the sweep dir: <name>.yaml and <name>.json (best trial or Pareto front)."""


# ------------------------------------------------------------------------------------------- launchers


@dataclass
class MerSlurmQueueConf(SlurmQueueConf):
    """hydra-submitit-launcher's Slurm settings; MER's launcher skips completed runs and requeues on time-out."""

    _target_: str = "hydra_plugins.mer_sweeps.submitit_launcher.MerSlurmLauncher"
    poll_s: float = 5.0
    """Seconds between looks at the submitted jobs (result files and squeue)."""
    lost_after_s: float = 120.0
    """A job that Slurm reports ended (or no longer knows) but left no result this long is failed."""


@dataclass
class MerLocalQueueConf(LocalQueueConf):
    """hydra-submitit-launcher's local executor; MER's launcher skips completed runs."""

    _target_: str = "hydra_plugins.mer_sweeps.submitit_launcher.MerLocalLauncher"
    poll_s: float = 1.0
    lost_after_s: float = 120.0


def register() -> None:
    store = ConfigStore.instance()
    store.store(group="hydra/sweeper", name="mer_grid", node=MerGridSweeperConf, provider="mer_sweeps")
    store.store(group="hydra/sweeper", name="mer_optuna", node=MerOptunaSweeperConf, provider="mer_sweeps")
    for name, node in SAMPLERS.items():
        store.store(group="hydra/sweeper/sampler", name=name, node=node, provider="mer_sweeps")
    store.store(group="hydra/launcher", name="mer_submitit_slurm", node=MerSlurmQueueConf, provider="mer_sweeps")
    store.store(group="hydra/launcher", name="mer_submitit_local", node=MerLocalQueueConf, provider="mer_sweeps")


register()
