"""The `logger` config group: which experiment trackers mirror metrics.jsonl (docs/trackers.md).

metrics.jsonl is always written and stays the source of truth (the `jsonl` option selects nothing else). Each
tracker is a sub-node that is null until its option is picked, e.g. `logger=[tensorboard,mlflow]`, which
composes conf/logger/tensorboard.yaml and conf/logger/mlflow.yaml into `logger.tensorboard` and `logger.mlflow`.
A tracker whose library is not installed is refused when the config is checked, before any work, with the pip
command that installs it.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

# tracker -> (module to import, the requirement to install: the same range as the optional extra of pyproject.toml)
REQUIREMENTS = {
    "tensorboard": ("tensorboard", "tensorboard>=2.21,<3"),
    "mlflow": ("mlflow", "mlflow>=3.17,<4"),
    "wandb": ("wandb", "wandb>=0.31,<1"),
}


@dataclass
class TensorBoardConfig:
    """TensorBoard event files, written with torch.utils.tensorboard."""

    log_dir: str | None = None
    """Folder under which the run writes `<run name>/`; null: the run directory's own `tensorboard/`."""


@dataclass
class MlflowConfig:
    """An MLflow run per mer run, through MlflowClient."""

    tracking_uri: str | None = None
    """Where runs are stored: a database URI (sqlite:///path/mlflow.db, postgresql://...), a server (http://...)
    or a file store (file:/path/mlruns). null: $MLFLOW_TRACKING_URI, else sqlite:///<runs_dir>/mlflow.db."""
    experiment: str | None = None
    """Experiment name; null: the name of the runs_dir folder (so one sweep is one experiment)."""


@dataclass
class WandbConfig:
    """A Weights & Biases run per mer run (wandb.init with the run's stored id and resume="allow")."""

    project: str | None = None
    """W&B project; null: $WANDB_PROJECT, else "mer"."""
    entity: str | None = None
    """W&B team or user; null: wandb's default."""
    group: str | None = None
    """Run group; null: the name of the runs_dir folder (one sweep, one group)."""
    mode: str | None = None
    """online, offline or null ($WANDB_MODE, else online). offline needs no account: `wandb sync` uploads later."""
    dir: str | None = None
    """Where wandb keeps its local files (<dir>/wandb/); null: the run directory."""

    def __post_init__(self) -> None:
        if self.mode not in (None, "online", "offline"):
            raise ValueError(f"logger.wandb.mode={self.mode!r}: choose online, offline or null ($WANDB_MODE); to log "
                             "nothing to W&B leave wandb out of logger=[...]")


@dataclass
class LoggerConfig:
    """The trackers that receive every record of metrics.jsonl, the config, the summary and the run's status."""

    tensorboard: TensorBoardConfig | None = None
    mlflow: MlflowConfig | None = None
    wandb: WandbConfig | None = None

    def __post_init__(self) -> None:
        require_libraries(self.selected)

    @property
    def selected(self) -> list[str]:
        """Names of the trackers picked, in a fixed order."""
        return [name for name in REQUIREMENTS if getattr(self, name) is not None]


def require_libraries(trackers: list[str]) -> None:
    """Refuse trackers whose library is missing, naming the pip command that installs them all."""
    missing = [name for name in trackers if importlib.util.find_spec(REQUIREMENTS[name][0]) is None]
    if missing:
        extras = ",".join(missing)
        specs = " ".join(f'"{REQUIREMENTS[name][1]}"' for name in missing)
        raise ValueError(f"logger={trackers} needs {', '.join(missing)}, which is not installed: "
                         f"pip install {specs}  (from a checkout of mer: pip install -e \".[{extras}]\")")
