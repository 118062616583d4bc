"""Where training reports go: a JSONL file, TensorBoard, and a rich progress bar (rank 0 only)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from .guard import open_append


class MetricsLog:
    """Append-only JSONL events plus TensorBoard scalars; ``enabled=False`` on ranks other than 0."""

    def __init__(self, jsonl: Path, tensorboard: Path, *, enabled: bool, purge_step: int | None = None) -> None:
        self.enabled = enabled
        self._writer = None
        self._file = None
        if enabled:
            from torch.utils.tensorboard import SummaryWriter

            self._file = open_append(jsonl)  # never through a planted link; closed in close()
            self._writer = SummaryWriter(str(tensorboard), purge_step=purge_step)

    def write(self, kind: str, step: int, values: dict[str, Any]) -> None:
        if not self.enabled:
            return
        self._file.write(json.dumps({"kind": kind, "step": step, "time": round(time.time(), 3), **values}) + "\n")
        self._file.flush()
        for key, value in values.items():
            if isinstance(value, (int, float)):
                self._writer.add_scalar(f"{kind}/{key}", value, step)

    def close(self) -> None:
        if self.enabled:
            self._file.close()
            self._writer.close()


class ProgressBar:
    """``step M/N ━━━━  loss 3.21  lr 4.0e-04  12,345 tok/s  ETA 0:01:02``; silent when disabled."""

    def __init__(self, total: int, start: int, *, enabled: bool) -> None:
        self.console = Console(stderr=True)
        self.enabled = enabled
        self._progress = None
        if enabled:
            self._progress = Progress(
                TextColumn("step"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[stats]}"),
                TimeRemainingColumn(), console=self.console, transient=False,
            )
            self._task = self._progress.add_task("train", total=total, completed=start, stats="")
            self._progress.start()

    def update(self, step: int, loss: float, lr: float, tokens_per_s: float) -> None:
        if self._progress is not None:
            stats = f"loss {loss:.3f}  lr {lr:.1e}  {tokens_per_s:,.0f} tok/s"
            self._progress.update(self._task, completed=step, stats=stats)

    def print(self, message: str) -> None:
        if self._progress is not None:
            self._progress.console.print(message, highlight=False, markup=False)
        else:
            print(message, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
