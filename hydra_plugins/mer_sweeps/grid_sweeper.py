"""`hydra/sweeper=mer_grid` (the default of conf/config.yaml): Hydra's basic grid, run to the end, then one table.

Hydra's BasicSweeper stops after the first batch holding a failed job and shows that job's traceback; the
other points of a long grid never run and there is no overview. This sweeper builds the same grid (the
same `params`, `max_batch_size` and command-line sweeps, so run names and `multirun.yaml` are unchanged),
launches every batch whatever failed before, and at the end prints one table of every point of the sweep:
completed (also those skipped because they already were), refused by the config check with the reason,
failed with the last line of the error (sweeps/sweep_table.py). The table is saved as
`<sweep dir>/sweep_table.txt` and `.json`; the sweep then ends with an error naming how many points did not
complete, so a script or CI sees a non-zero exit code, or with exit code 0 if all completed.

A job stopped by a signal (exit code 143: it checkpointed, the launcher or Slurm requeues it) ends the sweep at
once, as with the other sweepers: launched again, it resumes. SIGTERM or SIGINT to the sweep itself does the same
(`mer.signals.stop_request`): the running job checkpoints after its step, no later job starts, exit code 143.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any, Sequence

from hydra._internal.core_plugins.basic_launcher import BasicLauncher
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.utils import JobReturn, JobStatus
from hydra.errors import CompactHydraException
from omegaconf import OmegaConf

from mer.signals.stop_request import STOPPED_BY_SIGNAL, SweepStop, requested

log = logging.getLogger(__name__)


class SweepIncomplete(CompactHydraException):
    """Some points did not complete (Hydra prints only this message, not a traceback of the sweeper)."""


def stop_sweep(stop: SystemExit, sweep_dir: Path) -> None:
    """End the sweep after a job exited with `stop.code`: a signal (143) gets one message saying how to resume."""
    if stop.code == STOPPED_BY_SIGNAL:
        signum = requested()
        print(f"sweep stopped by {'signal ' + str(signum) if signum is not None else 'a signal'}: a job that was "
              f"training saved a checkpoint, no later job was started. Run the same command again to resume "
              f"(completed points are skipped, the stopped one resumes); sweep dir {sweep_dir}",
              file=sys.stderr, flush=True)
    raise stop


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""


def job_outcome(result: JobReturn | BaseException) -> tuple[str, str | None]:
    """completed | refused | failed, and the reason as one line."""
    from mer.rundir.refusal import RunRefused

    if isinstance(result, JobReturn):
        if result.status == JobStatus.COMPLETED:
            return "completed", None
        result = result._return_value  # the job's exception (`return_value` would raise it)
    if isinstance(result, RunRefused):
        return "refused", str(result)
    if isinstance(result, SystemExit):
        return "failed", f"the job exited with code {result.code}; see its log"
    return "failed", _last_line(f"{type(result).__name__}: {result}") or type(result).__name__


class MerGridSweeper(BasicSweeper):
    def setup(self, *, hydra_context: Any, task_function: Any, config: Any) -> None:
        super().setup(hydra_context=hydra_context, task_function=task_function, config=config)
        if config.get("plan"):  # plan=true: every point in this process, instantly; no Slurm job is submitted
            from hydra._internal.core_plugins.basic_launcher import BasicLauncher

            self.launcher = BasicLauncher()
            self.launcher.setup(hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments: list[str]) -> Any:
        assert self.config is not None and self.launcher is not None and self.hydra_context is not None
        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        self.overrides = self.split_arguments(parser.parse_overrides(self._parse_config() + list(arguments)),
                                              self.max_batch_size)
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        planning = bool(self.config.get("plan"))
        if not planning:  # a plan leaves the sweep directory as it is (it writes only plan.csv)
            sweep_dir.mkdir(parents=True, exist_ok=True)
            OmegaConf.save(self.config, sweep_dir / "multirun.yaml")

        jobs: list[list[str]] = []
        results: list[JobReturn | BaseException] = []
        # SIGTERM/SIGINT: the current job checkpoints, no later job starts (mer.signals.stop_request): in-process
        # jobs read the request, the local launcher passes it on to its jobs' processes
        with SweepStop(in_process=isinstance(self.launcher, BasicLauncher),
                       forwards=getattr(self.launcher, "forwards_stop", False)):
            while not self.is_done():
                batch = self.get_job_batch()
                self.validate_batch_is_legal(batch)  # a typo in a key stops the sweep before any job runs
                try:
                    results.extend(self._launch(batch, initial_job_idx=len(jobs)))
                except SystemExit as stop:
                    stop_sweep(stop, sweep_dir)
                jobs.extend(list(job) for job in batch)
                if requested() is not None and not self.is_done():  # the last job ended before it saw the signal
                    stop_sweep(SystemExit(STOPPED_BY_SIGNAL), sweep_dir)
        if planning:
            from mer.plan.sweep_plan import report_sweep_plan
            from sweeps.sweep_table import point_labels

            labels = [label or " ".join(job) or "default" for label, job in zip(point_labels(jobs), jobs)]
            report_sweep_plan(sweep_dir, labels, results, self.config.get("plan_csv"))
            return [[r for r in results if isinstance(r, JobReturn)]]
        self.report(sweep_dir, jobs, results)
        return [[r for r in results if isinstance(r, JobReturn)]]

    def _launch(self, batch: Sequence[Sequence[str]], initial_job_idx: int) -> list[JobReturn | BaseException]:
        """Launch a batch; if the launcher itself raises or exits (a job's sys.exit passes through Hydra's
        basic launcher), launch its jobs one at a time so that only the culprit fails (completed runs are
        skipped, so the jobs that ran already cost nothing the second time)."""
        assert self.launcher is not None
        try:
            return list(self.launcher.launch(batch, initial_job_idx=initial_job_idx))
        except (Exception, SystemExit) as error:
            if isinstance(error, SystemExit) and error.code in (0, None, STOPPED_BY_SIGNAL):
                raise
            if len(batch) == 1:
                return [error]
            log.warning("the batch failed as a whole (%s); launching its jobs one at a time", error)
            returns: list[JobReturn | BaseException] = []
            for offset, overrides in enumerate(batch):
                returns.extend(self._launch([overrides], initial_job_idx + offset))
            return returns

    def _run_dir(self, overrides: list[str]) -> Path:
        from mer.rundir.layout import run_name_from_overrides
        from sweeps.rundirs import job_run_dir

        assert self.hydra_context is not None and self.config is not None
        try:
            return job_run_dir(self.hydra_context.config_loader, self.config, overrides)
        except Exception:  # noqa: BLE001 - validated already; a fallback only for a config that no longer composes
            return Path(str(self.config.runs_dir)).expanduser() / run_name_from_overrides(overrides)

    def report(self, sweep_dir: Path, jobs: list[list[str]], results: list[JobReturn | BaseException]) -> None:
        """Print and save the table; raise SweepIncomplete if any point did not complete."""
        from mer.rundir.next_steps import sweep_next_steps
        from sweeps.sweep_table import Point, build_table, not_completed, point_labels, write_table

        points = [Point(label, self._run_dir(job), *job_outcome(result))
                  for label, job, result in zip(point_labels(jobs), jobs, results)]
        table = build_table(sweep_dir, points)
        path, text = write_table(sweep_dir, table)
        print(f"\n{text}\n(saved in {path} and {path.with_suffix('.json').name})\n{sweep_next_steps(sweep_dir)}",
              flush=True)
        missing = not_completed(table)
        if missing:
            raise SweepIncomplete(f"{missing} of {len(points)} points refused/failed, see {path}")
