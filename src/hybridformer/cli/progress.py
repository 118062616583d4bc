"""Progress bars on stderr for long waits (``convert``, ``export``, ``evaluate``; ``generate`` counts its lines),
and what Ctrl-C and SIGTERM do to commands that can report what they finished."""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

PROGRESS = typer.Option(None, "--progress/--no-progress", help="Progress bar on stderr (default: when stderr is a "
                        "terminal).")


class Bar:
    """The bar ``train`` shows (``label M/N ━━━━ ETA``) on stderr, for a command's long wait; silent when disabled.

    ``with Bar("tensors", enabled=None) as bar: ... bar.update(done, total)``; ``enabled=None`` (auto) shows it when
    stderr is a terminal, so logs and pipes stay clean.
    """

    def __init__(self, label: str, total: int | None = None, *, enabled: bool | None = None) -> None:
        self._progress = None
        if enabled if enabled is not None else sys.stderr.isatty():
            self._progress = Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                                      console=Console(stderr=True), redirect_stdout=False, redirect_stderr=False)
            self._task = self._progress.add_task(label, total=total)

    def __enter__(self) -> Bar:
        if self._progress is not None:
            self._progress.start()
        return self

    def update(self, done: int, total: int | None = None) -> None:
        if self._progress is not None:
            self._progress.update(self._task, completed=done, total=total)

    def advance(self) -> None:
        if self._progress is not None:
            self._progress.advance(self._task)

    def stop(self) -> None:
        if self._progress is not None:
            self._progress.stop()

    def __exit__(self, *exc_info) -> None:
        self.stop()


class LineProgress(Bar):
    """For commands that stream one output line per input line: ``enabled=None`` (auto) shows the bar when stderr
    is a terminal and stdout is not (``> out.txt``), since streamed outputs on the terminal already show the
    progress. The total is the number of lines of ``input_path`` (unknown for stdin)."""

    def __init__(self, input_path: str, *, enabled: bool | None = None) -> None:
        if enabled is None:
            enabled = sys.stderr.isatty() and not sys.stdout.isatty()
        total = _count_lines(Path(input_path)) if enabled and input_path != "-" else None
        super().__init__("lines", total, enabled=enabled)


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


class Stop:
    """Which signal stopped the block of :func:`stop_signals`; ``status`` is the exit status, 128 + the signal."""

    signal: int = signal.SIGINT

    @property
    def status(self) -> int:
        return 128 + self.signal

    @property
    def name(self) -> str:
        return signal.Signals(self.signal).name


@contextmanager
def stop_signals() -> Iterator[Stop]:
    """SIGINT and SIGTERM both raise ``KeyboardInterrupt`` inside the block (main thread), so a command stopped by
    ``timeout`` or a scheduler unwinds like one stopped by Ctrl-C and can report what it finished; SIGTERM would
    otherwise end the process without a word."""
    stop = Stop()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def handle(signum: int, frame) -> None:
        stop.signal = signum
        raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
