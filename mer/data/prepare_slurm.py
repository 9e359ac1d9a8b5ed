"""A preparation as a Slurm job array through submitit: one array task per group of pieces, requeued on a
preemption (sbatch --requeue) or a time-out (submitit's checkpoint, `PieceGroupJob.checkpoint`).

A requeued or relaunched array task does only the pieces still missing: each finished piece is on disk with its
record (`mer.data.shard_build`), so nothing done is lost and nothing is done twice. The launching process waits for
the array; any array task also publishes a task whose pieces it finds all done, so the shards are complete even when
the launching process is gone.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from pathlib import Path

import submitit

from mer.data.corpus import DataError
from mer.data.piece_groups import GroupSpec, build_group
from mer.data.prepare_config import SlurmPrepareConfig


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
    print(f"submitted {len(jobs)} Slurm array task(s) as job {jobs[0].job_id.split('_')[0]}; waiting", flush=True)
    while not all(job.done() for job in jobs):
        time.sleep(slurm.poll_s)
    for job in jobs:
        try:
            job.result()
        except Exception as error:  # noqa: BLE001 - submitit raises the job's own error, or a FailedJobError
            raise DataError(f"Slurm array task {job.job_id} failed ({str(error).strip().splitlines()[-1][:300]}); "
                            f"its log: {job.paths.stderr}; the pieces it finished are kept: run the same command "
                            "again") from None
