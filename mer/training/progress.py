"""Progress display: a tqdm bar on a terminal, plain periodic log lines elsewhere (Slurm logs)."""

from __future__ import annotations

import logging
import sys
import time

log = logging.getLogger("mer.training.progress")


class Progress:
    """Shows task, step, loss, tokens/s, MFU (from the last train line), ETA and a note (the last downstream scores)."""

    def __init__(self, total_steps: int, start_step: int, task_names: list[str], every_s: float = 30.0) -> None:
        self.total, self.start_step = total_steps, start_step
        self.every_s = every_s
        self.started = self.last_print = time.perf_counter()
        self.start_tokens: int | None = None
        self.tokens = 0
        self.bar = None
        if sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total_steps, initial=start_step, unit="step", dynamic_ncols=True)

    def tokens_per_s(self) -> float:
        elapsed = time.perf_counter() - self.started
        return (self.tokens - (self.start_tokens or 0)) / elapsed if elapsed > 0 else 0.0

    def update(self, step: int, task: str, loss: float, tokens: int, mfu: float | None = None, note: str = "") -> None:
        if self.start_tokens is None:
            self.start_tokens = tokens
        self.tokens = tokens
        if self.bar is not None:
            self.bar.n = step
            shown_mfu = "" if mfu is None else f" mfu={mfu:.1%}"
            shown_note = f" | {note}" if note else ""
            self.bar.set_postfix_str(f"task={task} loss={loss:.3f} tok/s={self.tokens_per_s():,.0f}{shown_mfu}"
                                     f"{shown_note}", refresh=False)
            self.bar.refresh()
            return
        now = time.perf_counter()
        if now - self.last_print >= self.every_s or step == self.total:
            self.last_print = now
            done = step - self.start_step
            eta = (now - self.started) / done * (self.total - step) if done else float("nan")
            log.info("step %d/%d task=%s loss=%.4f tok/s=%.0f%s eta=%.0fs%s", step, self.total, task, loss,
                     self.tokens_per_s(), "" if mfu is None else f" mfu={mfu:.1%}", eta,
                     f" | downstream {note}" if note else "")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
