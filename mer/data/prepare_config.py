"""Typed config of how `python -m mer.data.prepare` does its work: processes on this machine or a Slurm job array.

These keys are the command's own (top level: `workers=4`, `launcher=slurm slurm.array_tasks=16`): they change
how fast the shards are made, never what is in them, so they are not part of a run's config.
"""

from __future__ import annotations

from dataclasses import dataclass, field

LAUNCHERS = ("local", "slurm")


@dataclass
class SlurmPrepareConfig:
    """The Slurm job array of a preparation (submitit; the same keys as conf/hydra/launcher/slurm.yaml)."""

    array_tasks: int = 4
    """Array tasks: the pieces are dealt round-robin into this many groups, one array task each."""
    partition: str | None = None
    """sbatch --partition."""
    account: str | None = None
    """sbatch --account."""
    qos: str | None = None
    """sbatch --qos."""
    timeout_min: int = 240
    """sbatch --time, minutes; a task that times out is requeued and prepares only what is missing."""
    cpus_per_task: int = 2
    """CPUs of each array task (the tokenizer encodes a batch on all of them)."""
    mem_gb: int | None = None
    """Memory of each array task; null takes the partition's default."""
    max_num_timeout: int = 20
    """Requeue on time-out at most this many times (preemptions do not count)."""
    array_parallelism: int = 256
    """At most this many array tasks run at once."""
    additional_parameters: dict = field(default_factory=lambda: {"requeue": True})
    """Extra sbatch flags. requeue: Slurm requeues an array task after a preemption or a node failure."""
    setup: list[str] = field(default_factory=list)
    """Shell lines run in the sbatch script first (modules, environment variables)."""
    submitit_folder: str | None = None
    """Where submitit keeps the jobs' pickles and logs; null: `<data_dir>/.submitit/%j`."""
    poll_s: float = 5.0
    """Seconds between looks at the jobs."""

    def __post_init__(self) -> None:
        if self.array_tasks < 1:
            raise ValueError(f"slurm.array_tasks={self.array_tasks} must be >= 1")
        if self.timeout_min < 1 or self.cpus_per_task < 1 or self.array_parallelism < 1:
            raise ValueError("slurm.timeout_min, slurm.cpus_per_task and slurm.array_parallelism must be >= 1")
        if self.mem_gb is not None and self.mem_gb < 1:
            raise ValueError(f"slurm.mem_gb={self.mem_gb} must be >= 1 or null")
        if self.max_num_timeout < 0 or not self.poll_s > 0:
            raise ValueError("slurm.max_num_timeout must be >= 0 and slurm.poll_s > 0")


@dataclass
class PrepareConfig:
    """How the pieces of a preparation are tokenized."""

    workers: int = 1
    """Processes on this machine, each tokenizing one piece at a time (launcher=local)."""
    launcher: str = "local"
    """local (this machine, `workers` processes) or slurm (a job array through submitit, `slurm.*`)."""
    piece_bytes: int = 256 << 20
    """Size of a piece of a large uncompressed text or JSONL file; smaller files are one piece each."""
    slurm: SlurmPrepareConfig = field(default_factory=SlurmPrepareConfig)
    """The job array (launcher=slurm)."""

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ValueError(f"workers={self.workers} must be >= 1")
        if self.launcher not in LAUNCHERS:
            raise ValueError(f"launcher={self.launcher!r} is unknown; use one of {LAUNCHERS}")
        if self.launcher == "slurm" and self.workers != 1:
            raise ValueError(f"workers={self.workers} cannot take effect with launcher=slurm (each array task "
                             "prepares its pieces in one process); set slurm.array_tasks instead")
        if self.piece_bytes < 4096:
            raise ValueError(f"piece_bytes={self.piece_bytes} is too small; use at least 4096 (default 256 MiB)")
