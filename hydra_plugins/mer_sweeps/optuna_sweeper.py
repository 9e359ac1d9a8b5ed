"""`hydra/sweeper=mer_optuna`: an Optuna study driven through Hydra's launchers, on Optuna's ask-and-tell API.

Loop: ask `n_jobs` trials -> turn their parameters into override lists -> `launcher.launch(batch)` (the basic
launcher, submitit local or a Slurm job array) -> read each job's objective(s) from its return value
(`mer.run` returns the run's summary) -> tell Optuna. A job that raised, returned nothing usable or a
non-finite value is told as FAIL and the study goes on. After every batch the best trial (single objective)
or the Pareto front (several) is written to `<sweep dir>/best.yaml` and `best.json`.

The study lives in a storage (sqlite in the sweep dir by default) and is resumed by name: launching the same
sweep again runs only the trials still missing from `n_trials`.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any, Sequence

from hydra._internal.core_plugins.basic_launcher import BasicLauncher
from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, ListConfig, OmegaConf

from mer.config.usage_errors import UsageError
from mer.files.atomic import write_text
from mer.files.strict_json import dumps as strict_dumps
from mer.signals.stop_request import STOPPED_BY_SIGNAL, SweepStop, requested

from .grid_sweeper import stop_sweep
from .search_space import SearchSpace, parse_search_space

log = logging.getLogger(__name__)

_DIRECTIONS = ("minimize", "maximize")


class StorageError(UsageError):
    """hydra.sweeper.storage cannot be opened (a config error: one message, exit code 2)."""


class TrialFailed(Exception):
    """A job's result cannot be told to Optuna as a value."""


def _tell(study: Any, trial: Any, values: Any = None, state: Any = None) -> None:
    """`study.tell`, minus the grid sampler's `study.stop()` once the grid is exhausted: that call only works
    inside `study.optimize`, and the result is stored before it (n_trials ends the sweep here)."""
    try:
        study.tell(trial, values, state=state)
    except RuntimeError as error:
        if "Study.stop" not in str(error):
            raise


class MerOptunaSweeper(Sweeper):
    def __init__(self, sampler: Any, study_name: str, storage: str | None, direction: Any,
                 objectives: Sequence[str] | None, n_trials: int, n_jobs: int, params: dict[str, str] | None,
                 retry_interrupted: bool = True, results_file: str = "best") -> None:
        self.sampler_cfg = sampler
        self.study_name = study_name
        self.storage_spec = storage
        directions = list(direction) if isinstance(direction, (list, tuple, ListConfig)) else [direction]
        if not directions or any(d not in _DIRECTIONS for d in directions):
            raise ValueError(f"hydra.sweeper.direction={direction}: use minimize/maximize or a list of them")
        self.directions = [str(d) for d in directions]
        self.objectives = None if objectives is None else [str(o) for o in objectives]
        if self.objectives is not None and len(self.objectives) != len(self.directions):
            raise ValueError(f"hydra.sweeper.objectives {self.objectives} and direction {self.directions} "
                             "must have the same length (one direction per objective)")
        if n_trials < 1 or n_jobs < 1:
            raise ValueError(f"hydra.sweeper: n_trials={n_trials} and n_jobs={n_jobs} must be >= 1")
        self.n_trials, self.n_jobs = n_trials, n_jobs
        self.params = {str(k): str(v) for k, v in (params or {}).items()}
        self.retry_interrupted = retry_interrupted
        self.results_file = results_file
        self.config: DictConfig | None = None
        self.hydra_context: HydraContext | None = None
        self.launcher: Any = None
        self.job_idx = 0

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        if config.get("plan"):
            raise ValueError("plan=true plans the points of a grid, but an Optuna study picks each trial from the "
                             "results of the earlier ones: plan one trial without -m (e.g. its largest point), or "
                             "the grid of its bounds with hydra/sweeper=mer_grid")
        self.config = config
        self.hydra_context = hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config)
        self.sweep_dir = Path(str(config.hydra.sweep.dir))

    # ----------------------------------------------------------------------------------------- pieces
    def _storage(self) -> Any:
        import optuna

        spec = self.storage_spec
        if spec in (None, "", "sqlite"):
            return f"sqlite:///{(self.sweep_dir / 'optuna.db').resolve()}"
        if spec == "journal" or spec.startswith("journal:"):
            from optuna.storages.journal import JournalFileBackend, JournalStorage

            path = Path(spec[len("journal:"):]) if spec.startswith("journal:") else self.sweep_dir / "optuna.journal"
            path.parent.mkdir(parents=True, exist_ok=True)
            return JournalStorage(JournalFileBackend(str(path)))
        if "://" not in spec:
            raise ValueError(f"hydra.sweeper.storage={spec!r}: use null, sqlite, journal, journal:<path> or a URL")
        return optuna.storages.RDBStorage(spec) if not spec.startswith("sqlite") else spec

    def _open_study(self, sampler: Any) -> Any:
        """Create or load the study; a storage that cannot be opened raises StorageError naming the setting."""
        import optuna

        if self.storage_spec in (None, "", "sqlite"):
            self.sweep_dir.mkdir(parents=True, exist_ok=True)
        try:
            return optuna.create_study(study_name=self.study_name, storage=self._storage(), sampler=sampler,
                                       directions=self.directions, load_if_exists=True)
        except ValueError as error:
            raise StorageError(str(error)) from error
        except Exception as error:  # noqa: BLE001 - SQLAlchemy, a missing database driver, the file system
            reason = (str(error).strip().splitlines() or [""])[0][:300]
            raise StorageError(
                f"hydra.sweeper.storage={self.storage_spec!r}: cannot open the Optuna storage "
                f"({type(error).__name__}: {reason}); use null (sqlite in the sweep dir), journal, journal:<path> "
                "in a writable folder, or a database URL that is reachable with its driver installed") from error

    def _sampler(self, space: SearchSpace) -> Any:
        from hydra.utils import instantiate

        cfg = self.sampler_cfg
        self.grid_size = None
        if cfg is None:
            return None
        target = str(OmegaConf.select(cfg, "_target_") if OmegaConf.is_config(cfg) else cfg.get("_target_"))
        if target.endswith("GridSampler"):
            grid = OmegaConf.select(cfg, "search_space") if OmegaConf.is_config(cfg) else cfg.get("search_space")
            if grid is None:
                missing = [k for k in space.distributions if k not in space.grid]
                if missing:
                    raise ValueError(f"the grid sampler needs choice() or range() values; {missing} are intervals")
                self.grid_size = math.prod(len(v) for v in space.grid.values())
                return instantiate(cfg, search_space=space.grid, _convert_="all")
            self.grid_size = math.prod(len(v) for v in grid.values())
        return instantiate(cfg, _convert_="all")

    def _objective_values(self, job_return: Any) -> list[float]:
        try:
            value = job_return.return_value  # re-raises the job's exception if it failed
        except BaseException as error:  # noqa: BLE001 - any job failure is a failed trial
            raise TrialFailed(f"the job failed: {type(error).__name__}: {error}".splitlines()[0][:500]) from error
        if value is None:
            raise TrialFailed("the job returned no value")
        if self.objectives is None:
            values = list(value) if isinstance(value, (list, tuple, ListConfig)) else [value]
        else:
            from sweeps.rundirs import dig

            values = []
            for path in self.objectives:
                try:
                    values.append(dig(value, path))
                except (KeyError, IndexError, TypeError):
                    raise TrialFailed(f"the job's return value has no {path!r}") from None
        if len(values) != len(self.directions):
            raise TrialFailed(f"{len(values)} objective value(s) for {len(self.directions)} direction(s)")
        try:
            values = [float(v) for v in values]
        except (TypeError, ValueError):
            raise TrialFailed(f"objective values {values} are not numbers") from None
        if not all(math.isfinite(v) for v in values):
            raise TrialFailed(f"objective values {values} are not finite")
        return values

    def _run_dir(self, overrides: list[str]) -> str | None:
        from sweeps.rundirs import job_run_dir

        try:
            return str(job_run_dir(self.hydra_context.config_loader, self.config, overrides).resolve())
        except Exception as error:  # noqa: BLE001 - a config that does not compose fails when launched
            log.warning("cannot compose the config of %s: %s", overrides, error)
            return None

    def _launch(self, batch: list[list[str]]) -> list[Any]:
        """Launch a batch; if the launcher itself raises (the basic launcher lets a job's sys.exit through),
        launch the batch's jobs one at a time so that only the culprit fails. Exit code 143 (a signal asked
        the run to checkpoint and stop) ends the sweep: its trials stay RUNNING and are retried on resume."""
        try:
            returns = list(self.launcher.launch(batch, initial_job_idx=self.job_idx))
        except (Exception, SystemExit) as error:
            if isinstance(error, SystemExit) and error.code == 143:
                raise
            if len(batch) == 1:
                returns = [error]
            else:
                log.warning("the batch failed as a whole (%s); launching its jobs one at a time", error)
                returns = []
                for offset, overrides in enumerate(batch):
                    try:
                        returns.extend(self.launcher.launch([overrides], initial_job_idx=self.job_idx + offset))
                    except (Exception, SystemExit) as single:
                        if isinstance(single, SystemExit) and single.code == 143:
                            raise
                        returns.append(single)
        self.job_idx += len(batch)
        return returns

    # ----------------------------------------------------------------------------------------- sweep
    def sweep(self, arguments: list[str]) -> Any:
        import optuna
        from optuna.trial import TrialState

        assert self.config is not None and self.hydra_context is not None
        space = parse_search_space(self.params, arguments, self.hydra_context.config_loader)
        if not space.distributions:
            raise ValueError("the Optuna sweeper has nothing to search: give hydra.sweeper.params or sweeps like "
                             "alpha='interval(0,0.5)' on the command line")
        sampler = self._sampler(space)
        study = self._open_study(sampler)  # a storage that cannot be opened is refused before anything is written
        self.sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, self.sweep_dir / "multirun.yaml")
        if list(study.directions) != [optuna.study.StudyDirection[d.upper()] for d in self.directions]:
            raise ValueError(f"study {self.study_name!r} in the storage has directions {study.directions}, "
                             f"this sweep asks for {self.directions}; use another study_name")
        study.set_user_attr("objectives", self.objectives)
        study.set_user_attr("search_space", {**self.params, **{k: str(v) for k, v in space.distributions.items()}})

        n_trials = self.n_trials
        if self.grid_size is not None and n_trials > self.grid_size:
            log.info("the grid has %d points; n_trials=%d is capped to it", self.grid_size, n_trials)
            n_trials = self.grid_size

        self._retry_interrupted(study)
        log.info("study %r (%s): %d of %d trials done; search space %s, fixed %s", self.study_name,
                 self.storage_spec or "sqlite", self._done(study), n_trials,
                 {k: str(v) for k, v in space.distributions.items()}, space.fixed)
        # SIGTERM/SIGINT: the current trials checkpoint, no later trial starts (mer.signals.stop_request): in-process
        # jobs read the request, the local launcher passes it on to its jobs' processes
        with SweepStop(in_process=isinstance(self.launcher, BasicLauncher),
                       forwards=getattr(self.launcher, "forwards_stop", False)):
            while (remaining := n_trials - self._done(study)) > 0:
                trials = [study.ask(space.distributions) for _ in range(min(self.n_jobs, remaining))]
                batch = []
                for trial in trials:
                    overrides = space.overrides(trial.params)
                    batch.append(overrides)
                    trial.set_user_attr("overrides", overrides)
                    trial.set_user_attr("job_idx", self.job_idx + len(batch) - 1)
                    run_dir = self._run_dir(overrides)
                    if run_dir is not None:
                        trial.set_user_attr("run_dir", run_dir)
                try:
                    returns = self._launch(batch)
                except SystemExit as stop:
                    stop_sweep(stop, self.sweep_dir)  # its trials stay RUNNING and are asked again on resume
                for trial, job_return in zip(trials, returns):
                    try:
                        if isinstance(job_return, BaseException):
                            raise TrialFailed(f"the launcher failed: {type(job_return).__name__}: {job_return}")
                        values = self._objective_values(job_return)
                    except TrialFailed as failure:
                        trial.set_user_attr("fail_reason", str(failure))
                        _tell(study, trial, state=TrialState.FAIL)
                        log.warning("trial %d failed: %s", trial.number, failure)
                        continue
                    _tell(study, trial, values if len(values) > 1 else values[0])
                    log.info("trial %d: %s -> %s", trial.number, trial.params, values)
                self.write_results(study)
                if requested() is not None and n_trials - self._done(study) > 0:  # a trial ended before the signal
                    stop_sweep(SystemExit(STOPPED_BY_SIGNAL), self.sweep_dir)
        self.write_results(study)
        return study

    def _done(self, study: Any) -> int:
        """Finished trials that count toward n_trials (a FAIL that was retried does not count)."""
        from optuna.trial import TrialState

        trials = study.get_trials(deepcopy=False)
        retried = {t.user_attrs.get("retry_of") for t in trials}
        return sum(1 for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)
                   or (t.state == TrialState.FAIL and t.number not in retried))

    def _retry_interrupted(self, study: Any) -> None:
        from optuna.trial import TrialState

        if not self.retry_interrupted:
            return
        for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            log.warning("trial %d was left running by an interrupted sweep; asking it again (its run resumes)",
                        trial.number)
            study.tell(trial.number, state=TrialState.FAIL)
            study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number}, skip_if_exists=False)

    # ----------------------------------------------------------------------------------------- results
    def write_results(self, study: Any) -> dict[str, Any]:
        from optuna.trial import TrialState

        def describe(trial: Any) -> dict[str, Any]:
            return {"number": trial.number, "values": list(trial.values), "params": trial.params,
                    "overrides": trial.user_attrs.get("overrides"), "run_dir": trial.user_attrs.get("run_dir")}

        trials = study.get_trials(deepcopy=False)
        counts = {state.name.lower(): sum(t.state == state for t in trials) for state in TrialState}
        results: dict[str, Any] = {
            "study_name": self.study_name, "storage": self.storage_spec or "sqlite",
            "directions": self.directions, "objectives": self.objectives,
            "trials": {k: v for k, v in counts.items() if v},
        }
        complete = [t for t in trials if t.state == TrialState.COMPLETE]
        if len(self.directions) == 1:
            results["best"] = describe(study.best_trial) if complete else None
        else:
            results["pareto_front"] = [describe(t) for t in sorted(study.best_trials, key=lambda t: t.values)] \
                if complete else []
        base = self.sweep_dir / self.results_file
        for path, text in ((base.with_suffix(".yaml"), OmegaConf.to_yaml(OmegaConf.create(results))),
                           (base.with_suffix(".json"), strict_dumps(results, indent=2))):
            write_text(path, text)
        return results
