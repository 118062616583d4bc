"""For commands that stream one output line per input line (``generate``): a progress bar on stderr, and
exact counting of the lines written when Ctrl-C stops them."""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn


class LineProgress:
    """``with LineProgress(input_path, enabled=None) as bar: ... bar.advance()``.

    ``enabled=None`` (auto) shows it when stderr is a terminal and stdout is not (``> out.txt``): when
    both are the terminal, the streamed outputs already show the progress. The total is the number of
    lines of ``input_path`` (unknown for stdin).
    """

    def __init__(self, input_path: str, *, enabled: bool | None = None) -> None:
        if enabled is None:
            enabled = sys.stderr.isatty() and not sys.stdout.isatty()
        self._progress = None
        if enabled:
            total = _count_lines(Path(input_path)) if input_path != "-" else None
            self._progress = Progress(TextColumn("lines"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                                      console=Console(stderr=True), redirect_stdout=False, redirect_stderr=False)
            self._task = self._progress.add_task("generate", total=total)

    def __enter__(self) -> LineProgress:
        if self._progress is not None:
            self._progress.start()
        return self

    def advance(self) -> None:
        if self._progress is not None:
            self._progress.advance(self._task)

    def stop(self) -> None:
        if self._progress is not None:
            self._progress.stop()

    def __exit__(self, *exc_info) -> None:
        self.stop()


def _count_lines(path: Path) -> int | None:
    if not path.is_file():
        return None
    with path.open("rb") as handle:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 20), b""))


@contextmanager
def sigint_deferred() -> Iterator[None]:
    """Hold SIGINT while the block runs (main thread); a Ctrl-C meanwhile is raised right after it."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


class StageProgress:
    """``with StageProgress() as bar: bar.update(stage, step, steps, loss)``: one bar per training stage on
    stderr when it is a terminal, otherwise a plain line every ``every`` steps (a log file shows progress too)."""

    def __init__(self, *, every: int = 10) -> None:
        self._progress = None
        self._tasks: dict[str, int] = {}
        self.every = every
        if sys.stderr.isatty():
            self._progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                      TextColumn("loss {task.fields[loss]:.4g}"), TimeRemainingColumn(),
                                      console=Console(stderr=True), redirect_stdout=False, redirect_stderr=False)

    def __enter__(self) -> StageProgress:
        if self._progress is not None:
            self._progress.start()
        return self

    def update(self, stage: str, step: int, steps: int, loss: float) -> None:
        if self._progress is None:
            if step % self.every == 0 or step == steps:
                print(f"{stage} step {step}/{steps} loss {loss:.4g}", file=sys.stderr, flush=True)
            return
        if stage not in self._tasks:
            self._tasks[stage] = self._progress.add_task(stage, total=steps, loss=loss)
        self._progress.update(self._tasks[stage], completed=step, loss=loss)

    def __exit__(self, *exc_info) -> None:
        if self._progress is not None:
            self._progress.stop()
