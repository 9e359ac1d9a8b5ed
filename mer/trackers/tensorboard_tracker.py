"""TensorBoard: event files written with torch.utils.tensorboard's SummaryWriter (docs/trackers.md).

Scalars go under the record's metric names (`train/loss`, `eval/val_loss/<task>`...), the flattened config as
the text `config` and as HParams (so the HParams tab compares the runs of a sweep on `summary/...`), the status
as the text `status`. A resumed run writes into the same folder; `rewind` opens the writer with purge_step, which
makes TensorBoard's reader drop every earlier point from that step on, so no step is shown twice.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mer.trackers.base import Tracker
from mer.trackers.config import TensorBoardConfig

HPARAM_METRICS = ("summary/learned_loss", "summary/retained_loss", "summary/forgetting", "summary/backward_transfer")


class TensorBoardTracker(Tracker):
    name = "tensorboard"
    can_rewind = True

    def __init__(self, cfg: TensorBoardConfig, run_dir: Path, run_name: str) -> None:
        base = Path(cfg.log_dir).expanduser() / run_name if cfg.log_dir is not None else run_dir / "tensorboard"
        self.log_dir = base.resolve()
        self.writer = None
        self._config: dict[str, Any] = {}
        self._new = True

    def open(self, saved: dict[str, Any] | None, config: dict[str, Any]) -> int:
        self.log_dir.mkdir(parents=True, exist_ok=True)  # an unwritable folder is refused before training
        self._config = config
        same_place = saved is not None and saved.get("log_dir") == str(self.log_dir)
        self._new = not same_place
        return int(saved.get("sent", 0)) if same_place else 0

    def rewind(self, purge_step: int) -> None:
        from torch.utils.tensorboard import SummaryWriter

        # purge_step=0 on a fresh folder changes nothing; on a reused one it drops stale points of an old run.
        self.writer = SummaryWriter(str(self.log_dir), purge_step=purge_step, flush_secs=30)
        if self._new:
            self._write_config()
        self.writer.add_text("status", "running", purge_step)

    def _write_config(self) -> None:
        from torch.utils.tensorboard.summary import hparams

        rows = "\n".join(f"| {key} | {value} |" for key, value in self._config.items())
        self.writer.add_text("config", "| key | value |\n| --- | --- |\n" + rows, 0)
        # HParams takes numbers, strings and booleans; None becomes the text "null".
        values = {k: (v if isinstance(v, (int, float, str, bool)) else "null" if v is None else str(v))
                  for k, v in self._config.items()}
        experiment, session_start, _ = hparams(values, {name: 0.0 for name in HPARAM_METRICS})
        for summary in (experiment, session_start):
            self.writer.file_writer.add_summary(summary)

    def log(self, step: int, metrics: dict[str, float]) -> None:
        for name, value in metrics.items():
            self.writer.add_scalar(name, value, step)

    def flush(self) -> None:  # everything logged is durable once it returns
        self.writer.flush()

    def finish(self, status: str, summary: dict[str, float], step: int, error: str | None) -> None:
        for name, value in summary.items():
            self.writer.add_scalar(name, value, step)
        self.writer.add_text("status", status + (f": {error}" if error else ""), step)
        self.writer.close()

    def state(self) -> dict[str, Any]:
        return {"log_dir": str(self.log_dir)}
