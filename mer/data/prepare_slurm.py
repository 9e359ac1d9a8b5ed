"""A preparation as a Slurm job array through submitit: one array task per group of pieces, requeued on a
preemption (sbatch --requeue) or a time-out (submitit's checkpoint, `PieceGroupJob.checkpoint`).

A requeued or relaunched array task does only the pieces still missing: each finished piece is on disk with its
record (`mer.data.shard_build`), so nothing done is lost and nothing is done twice. The launching process waits for
the array; any array task also publishes a task whose pieces it finds all done, so the shards are complete even when
the launching process is gone.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections import Counter
from pathlib import Path

import submitit

from mer.data.corpus import DataError
from mer.data.piece_groups import GroupSpec, build_group
from mer.data.prepare_config import SlurmPrepareConfig

RESULT_GRACE_S = 30.0
"""Seconds an array that left the queue is given for its result files to appear (a shared file system's lag)."""


def _in_queue(array_id: str) -> bool:
    """Whether any task of the array is still pending, running or requeued (`squeue`); True when Slurm cannot be
    asked, so that a slow controller never looks like a finished array."""
    try:
        out = subprocess.run(["squeue", "-h", "-j", array_id, "-o", "%i"], capture_output=True, text=True,
                             timeout=60)
    except (OSError, subprocess.SubprocessError):
        return True
    if out.returncode != 0:
        return "invalid job id" not in out.stderr.lower()  # a job id Slurm has forgotten: long gone
    return bool(out.stdout.strip())


class PieceGroupJob(submitit.helpers.Checkpointable):
    """An array task: build its group of pieces and finish the tasks complete then. On a time-out submitit calls
    `checkpoint` (inherited): the same call is requeued, and it starts with what is still missing."""

    def __call__(self, spec: GroupSpec, items: list[tuple[str, int]]) -> Counter:
        # The Rust tokenizer's threads where the task has several cores; one core: one thread, as a local worker.
        if os.environ.get("SLURM_CPUS_PER_TASK", "1") == "1":
            os.environ["TOKENIZERS_PARALLELISM"] = "false"
        return build_group(spec, items, finish=True)


def executor_for(slurm: SlurmPrepareConfig, data_dir: Path) -> submitit.AutoExecutor:
    folder = slurm.submitit_folder or str(data_dir / ".submitit" / "%j")
    # How often a timed-out task is requeued is the executor's own setting in submitit, not a job parameter.
    executor = submitit.AutoExecutor(folder=folder, cluster="slurm", slurm_max_num_timeout=slurm.max_num_timeout)
    parameters = {
        "name": "mer-prepare",
        "timeout_min": slurm.timeout_min,
        "cpus_per_task": slurm.cpus_per_task,
        "slurm_array_parallelism": slurm.array_parallelism,
        "slurm_additional_parameters": dict(slurm.additional_parameters),
        "slurm_setup": list(slurm.setup),
    }
    for key, value in (("slurm_partition", slurm.partition), ("slurm_account", slurm.account),
                       ("slurm_qos", slurm.qos), ("mem_gb", slurm.mem_gb)):
        if value is not None:
            parameters[key] = value
    executor.update_parameters(**parameters)
    return executor


def run_array(spec: GroupSpec, groups: list[list[tuple[str, int]]], slurm: SlurmPrepareConfig) -> None:
    """Submit one array task per group and wait for all of them; a failed array task is refused with its log."""
    if not groups:
        return
    executor = executor_for(slurm, Path(spec.data.data_dir).expanduser())
    jobs = executor.map_array(PieceGroupJob(), [spec] * len(groups), groups)
    array_id = jobs[0].job_id.split("_")[0]
    print(f"submitted {len(jobs)} Slurm array task(s) as job {array_id}; waiting", flush=True)
    left_queue_at = None
    while not all(job.done() for job in jobs):
        # A task killed outright (kill -9, out of memory) writes no result, and without Slurm's accounting
        # submitit cannot tell it failed: once the array has left the queue, its results get a grace period.
        if _in_queue(array_id):
            left_queue_at = None
        elif left_queue_at is None:
            left_queue_at = time.monotonic()
        elif time.monotonic() - left_queue_at > RESULT_GRACE_S:
            break
        time.sleep(slurm.poll_s)
    for job in jobs:
        if not job.done():
            raise DataError(f"Slurm array task {job.job_id} ended without a result (killed: kill -9, out of memory, "
                            f"a lost node); its log: {job.paths.stderr}; the pieces it finished are kept: run the "
                            "same command again (with more slurm.mem_gb if memory ran out)")
        try:
            job.result()
        except Exception as error:  # noqa: BLE001 - submitit raises the job's own error, or a FailedJobError
            raise DataError(f"Slurm array task {job.job_id} failed ({str(error).strip().splitlines()[-1][:300]}); "
                            f"its log: {job.paths.stderr}; the pieces it finished are kept: run the same command "
                            "again") from None
