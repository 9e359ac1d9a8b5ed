"""hydra-submitit-launcher's launchers, made safe for long MER runs (selected by conf/hydra/launcher/*.yaml).

What they add to `hydra_plugins.hydra_submitit_launcher`:

- **Completed runs are not submitted.** Each job's run directory is derived from its overrides as `mer.run`
  derives it; a run whose summary.json says `completed` gets its summary back as the job's return value
  without a Slurm job.
- **Time-out and preemption requeue with a checkpoint.** submitit's Slurm jobs get `--signal=USR2@<delay>`;
  its handler would requeue the job at once and exit in the middle of a training step. Here the signal is
  first passed on to the trainer (through its SIGUSR1 handler): it finishes the step, writes a checkpoint and
  exits with code 143; only then does submitit's handler requeue the job (`scontrol requeue`, counting
  time-outs against `max_num_timeout`). The requeued job composes the same overrides, finds the same run
  directory and resumes. Slurm's own SIGTERM (preemption with PreemptMode=REQUEUE, `scontrol requeue`) goes
  to the trainer directly and Slurm requeues the job itself.
- **Several tasks per job train together.** With `tasks_per_node` > 1 (one task per GPU) or several `nodes`,
  every task exports torch's rendezvous variables (submitit's `TorchDistributedEnvironment`: MASTER_ADDR is
  the job's first node, the port is derived from the job id) and becomes one rank of a data-parallel run
  (`mer.parallel.distributed`; `parallel=ddp|fsdp`). Rank 0 alone requeues the job after a time-out signal.
- **A stopped sweep stops its local jobs.** SIGTERM or SIGINT to a sweep on the local launcher is passed on to its
  jobs as SIGTERM: each trainer checkpoints and ends `stopped`, and the sweep exits with 143 after them (it used to
  die at once and leave its jobs training as orphans). Launched again, it resumes them.
- **A failed job fails only its own result.** A job that exits (sys.exit) instead of raising still leaves a
  result, and a job that dies without one (killed, out of memory) is noticed through squeue, so one bad run
  does not stop a sweep or hang it. This matters where `sacct` does not work (no accounting database).
"""

from __future__ import annotations

import logging
import signal
import subprocess
import time
from pathlib import Path
from typing import Any, Dict, List, Sequence

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, filter_overrides
from omegaconf import OmegaConf

from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import BaseSubmititLauncher
from mer.signals.stop_request import STOPPED_BY_SIGNAL, requested

log = logging.getLogger(__name__)

_SLURM_ENDED = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL",
                "DEADLINE", "SPECIAL_EXIT", "REVOKED"}


class JobLost(RuntimeError):
    """The scheduler says the job ended, but it left no result."""


class _MerSubmititLauncher(BaseSubmititLauncher):
    forwards_stop = False
    """Whether a stop asked of the sweep (SIGTERM/SIGINT to it) is passed on to the jobs, the sweep waiting for them
    and exiting with 143 (the local launcher). Slurm's jobs are signalled through Slurm (`scancel --signal`)."""

    def __init__(self, **params: Any) -> None:
        self.poll_s = float(params.pop("poll_s", 5.0))
        self.lost_after_s = float(params.pop("lost_after_s", 120.0))
        super().__init__(**params)

    # --------------------------------------------------------------------------------- in the job
    def __call__(self, sweep_overrides: List[str], job_dir_key: str, job_num: int, job_id: str,
                 singleton_state: Dict[type, Singleton]) -> JobReturn:
        import submitit

        usr_sig = submitit.JobEnvironment._usr_sig()
        submitit_handler = signal.getsignal(usr_sig)  # checkpoint_and_try_requeue, set by submitit
        pending: list[tuple[int, Any]] = []

        def not_yet_training(signum: int, frame: Any) -> None:  # SIGUSR1 before the trainer takes it over
            log.warning("signal %d before training started: nothing to checkpoint", signum)

        def on_timeout_or_preemption(signum: int, frame: Any) -> None:
            trainer_handler = signal.getsignal(signal.SIGUSR1)
            if callable(trainer_handler) and trainer_handler is not not_yet_training and callable(submitit_handler):
                log.warning("signal %d: asking the trainer to checkpoint, then requeueing", signum)
                pending.append((signum, frame))
                trainer_handler(signum, frame)  # the trainer finishes its step, saves, exits with 143
            elif callable(submitit_handler):
                submitit_handler(signum, frame)  # not training (yet): requeue right away

        if usr_sig != signal.SIGUSR1 and callable(submitit_handler):
            signal.signal(signal.SIGUSR1, not_yet_training)
            signal.signal(usr_sig, on_timeout_or_preemption)
        if submitit.JobEnvironment().num_tasks > 1:
            # The visible GPUs are left alone: mer.parallel.distributed picks cuda:<local rank modulo visible GPUs>,
            # which also covers --gpus-per-task=1 (where CUDA_VISIBLE_DEVICES=<local rank> would name no GPU).
            submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False, overwrite=True)
        try:
            return super().__call__(sweep_overrides, job_dir_key, job_num, job_id, singleton_state)
        except SystemExit as stop:
            if stop.code == STOPPED_BY_SIGNAL and pending and callable(submitit_handler):
                submitit_handler(*pending[0])  # dumps the same call for the requeued job, requeues, exits
            if stop.code in (0, None):
                raise
            if stop.code == STOPPED_BY_SIGNAL:
                raise  # Slurm's own SIGTERM (preemption, scontrol requeue): Slurm requeues or cancels the job
            # Any other exit: raise an exception instead, so submitit writes a result and the sweep learns of it.
            raise RuntimeError(f"the job exited with code {stop.code} (overrides {list(sweep_overrides)}); "
                               "see its log for the error") from None

    # --------------------------------------------------------------------------------- in the sweep
    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        import submitit

        from sweeps.rundirs import completed_summary, job_run_dir

        assert self.config is not None and self.hydra_context is not None
        returns: list[JobReturn | None] = [None] * len(job_overrides)
        todo = []
        for i, overrides in enumerate(job_overrides):
            try:
                run_dir = job_run_dir(self.hydra_context.config_loader, self.config, overrides)
            except Exception:  # noqa: BLE001 - a config that does not compose fails in its job, with its error
                run_dir = None
            summary = completed_summary(run_dir) if run_dir is not None else None
            if summary is not None:
                log.info("\t#%d : %s : completed, not submitted (%s)", initial_job_idx + i,
                         " ".join(filter_overrides(overrides)), run_dir)
                returns[i] = self._job_return(overrides, JobStatus.COMPLETED, summary)
            else:
                todo.append(i)
        if not todo:
            return returns  # type: ignore[return-value]

        params = dict(self.params)
        executor = submitit.AutoExecutor(
            cluster=self._EXECUTOR, folder=params.pop("submitit_folder"),
            **({f"{self._EXECUTOR}_max_num_timeout": params.pop("max_num_timeout")}
               if "max_num_timeout" in params else {}))
        base = set(OmegaConf.structured(BaseQueueConf).keys())
        executor.update_parameters(**{k if k in base else f"{self._EXECUTOR}_{k}": v for k, v in params.items()})

        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        log.info("Submitit '%s' sweep output dir : %s", self._EXECUTOR, sweep_dir)
        job_params = []
        for i in todo:
            idx = initial_job_idx + i
            log.info("\t#%d : %s", idx, " ".join(filter_overrides(job_overrides[i])))
            job_params.append((list(job_overrides[i]), "hydra.sweep.dir", idx, f"job_id_for_{idx}",
                               Singleton.get_state()))
        jobs = executor.map_array(self, *zip(*job_params))
        waited = self._wait(jobs)
        if self.forwards_stop and requested() is not None:  # every job has ended: checkpointed, or finished
            raise SystemExit(STOPPED_BY_SIGNAL)
        for i, job, result in zip(todo, jobs, waited):
            if isinstance(result, BaseException):
                log.error("job %s (#%d) failed: %s", job.job_id, initial_job_idx + i,
                          str(result).strip().splitlines()[-1] if str(result).strip() else type(result).__name__)
                returns[i] = self._job_return(job_overrides[i], JobStatus.FAILED, result)
            else:
                returns[i] = result
        return returns  # type: ignore[return-value]

    def _job_return(self, overrides: Sequence[str], status: JobStatus, value: Any) -> JobReturn:
        ret = JobReturn(overrides=list(overrides), status=status)
        ret.return_value = value
        return ret

    def _wait(self, jobs: Sequence[Any]) -> list[Any]:
        """Each job's JobReturn, or the exception that stands for its failure. A stop asked of the sweep
        (`mer.signals.stop_request`, only where `forwards_stop`) is passed on to the jobs still running, once."""
        results: dict[int, Any] = {}
        gone_since: dict[int, float] = {}
        forwarded = False
        while len(results) < len(jobs):
            if self.forwards_stop and requested() is not None and not forwarded:
                forwarded = True
                running = [job for n, job in enumerate(jobs) if n not in results]
                log.warning("signal %d: passed on to %d running job(s), which checkpoint and stop; the sweep ends "
                            "after them", requested(), len(running))
                for job in running:
                    self._stop_job(job)
            states = self._scheduler_states([j for n, j in enumerate(jobs) if n not in results])
            for n, job in enumerate(jobs):
                if n in results:
                    continue
                if job.paths.result_pickle.exists() or self._finished_without_scheduler(job):
                    try:
                        results[n] = job.results()[0]
                    except Exception as error:  # noqa: BLE001 - the job's own failure
                        results[n] = error
                    continue
                state = states.get(str(job.job_id)) if states is not None else "?"
                if state in _SLURM_ENDED or state is None:  # ended, or purged from the controller
                    first = gone_since.setdefault(n, time.monotonic())
                    if time.monotonic() - first > self.lost_after_s:
                        results[n] = JobLost(f"job {job.job_id} ended ({state or 'unknown to squeue'}) without a "
                                             f"result; see {job.paths.stderr}")
                else:
                    gone_since.pop(n, None)
            if len(results) < len(jobs):
                time.sleep(self.poll_s)
        return [results[n] for n in range(len(jobs))]

    def _scheduler_states(self, jobs: Sequence[Any]) -> dict[str, str | None] | None:
        return None

    def _stop_job(self, job: Any) -> None:
        """Ask a running job to checkpoint and stop (launchers that `forwards_stop`)."""

    def _finished_without_scheduler(self, job: Any) -> bool:
        return False


class MerSlurmLauncher(_MerSubmititLauncher):
    _EXECUTOR = "slurm"

    def _scheduler_states(self, jobs: Sequence[Any]) -> dict[str, str | None] | None:
        """Slurm's state of each job (None: unknown to the controller), from squeue; None if squeue fails."""
        if not jobs:
            return {}
        ids = [str(j.job_id) for j in jobs]
        arrays = sorted({i.split("_")[0] for i in ids})
        try:  # -r: one line per array task, pending ones included (else they show as 12_[0-3])
            out = subprocess.run(["squeue", "-h", "-r", "-t", "all", "-o", "%i|%T", "-j", ",".join(arrays)],
                                 capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired):
            return None
        if out.returncode != 0 and "Invalid job id" not in out.stderr:
            return None
        states: dict[str, str | None] = {i: None for i in ids}
        for line in out.stdout.splitlines():
            job_id, _, state = line.strip().partition("|")
            if job_id in states:
                states[job_id] = state.split()[0] if state else None
        return states


class MerLocalLauncher(_MerSubmititLauncher):
    _EXECUTOR = "local"
    forwards_stop = True  # its jobs are this machine's processes: a SIGTERM to the sweep reaches them through it

    def _stop_job(self, job: Any) -> None:
        """SIGTERM to the job's submitit controller, which passes it on to its tasks: each trainer finishes its step,
        checkpoints and exits with 143 (also for a Ctrl-C to the sweep: the controller would answer SIGINT by killing
        its tasks without a checkpoint)."""
        process = getattr(job, "_process", None)
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)

    def _finished_without_scheduler(self, job: Any) -> bool:
        return job.done()


# `checkpoint()` (inherited) resubmits the same call: same overrides -> same run directory -> resume.
__all__ = ["MerSlurmLauncher", "MerLocalLauncher", "JobLost"]
