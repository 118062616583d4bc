"""One writer per run directory, no writes through planted links, and recovery from a kill at any moment.

* :class:`RunLock` — an exclusive ``fcntl`` lock on ``RUN/run.lock`` held while a process trains into the
  run; the kernel drops it when the process dies, so a lock left by a killed run is stale by construction
  and is reported (its pid is gone), never waited for.
* :func:`write_file` — the run's own files are (re)written without following symbolic links.
* :func:`recover` — finishes or rolls back the replacements a kill interrupted (``best/`` stays
  recoverable) and removes half-written or half-deleted checkpoints.
"""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

from ..errors import DataError

LOCK_FILE = "run.lock"
_held: dict[Path, list] = {}  # path -> [fd, depth]: distill takes the lock, then train() takes it again


class RunLock:
    """``with RunLock(run_dir, log):`` — exclusive, re-entrant within one process, released on exit."""

    def __init__(self, root: Path, log: Callable[[str], None] | None = None, *, enabled: bool = True) -> None:
        self.root, self.log, self.enabled = Path(root), log or _stderr, enabled
        self.path = (self.root / LOCK_FILE).absolute()

    def __enter__(self) -> RunLock:
        if not self.enabled:
            return self
        if self.path in _held:
            _held[self.path][1] += 1
            return self
        self.root.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        except OSError as exc:
            raise DataError(f"cannot create {self.path}: {exc.strerror}"
                            f"{' (it is a symbolic link)' if exc.errno == errno.ELOOP else ''}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = _read_owner(fd)
            os.close(fd)
            raise DataError(f"{self.root} is in use by another training process{owner}; wait for it to finish "
                            "or choose another --out") from None
        except OSError as exc:  # a file system without locks: go on, but say so
            self.log(f"warning: could not lock {self.path} ({exc.strerror}); make sure no other run writes here")
        previous = _read_owner(fd)
        if previous:
            self.log(f"note: {self.root} was last locked by a process that is gone{previous}; taking it over")
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        _held[self.path] = [fd, 1]
        return self

    def __exit__(self, *exc_info) -> None:
        if not self.enabled:
            return
        entry = _held[self.path]
        entry[1] -= 1
        if entry[1] == 0:
            del _held[self.path]
            os.ftruncate(entry[0], 0)  # an empty lock file = released cleanly (a pid left in it = killed)
            fcntl.flock(entry[0], fcntl.LOCK_UN)
            os.close(entry[0])


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _read_owner(fd: int) -> str:
    text = os.pread(fd, 64, 0).decode(errors="replace").strip()
    return f" (pid {text})" if text.isdigit() else ""


def write_file(path: Path, text: str) -> None:
    """Write ``path`` without following a link planted in its place."""
    with _open_no_follow(path, os.O_TRUNC, "w") as handle:
        handle.write(text)


def open_append(path: Path):  # noqa: ANN201 - a text file object
    """Open ``path`` for appending, refusing a symbolic link."""
    return _open_no_follow(path, os.O_APPEND, "a")


NO_LINKS = "a run's files are never written through links (remove it)"


def _open_no_follow(path: Path, flags: int, mode: str):  # noqa: ANN202 - a text file object
    """``O_NOFOLLOW``: a link planted in a run directory is refused, never written through."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | flags, 0o644)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise DataError(f"{path} is a symbolic link; {NO_LINKS}") from None
        raise
    return os.fdopen(fd, mode, encoding="utf-8")


def recover(checkpoints: Path, is_complete: Callable[[Path], bool], log: Callable[[str], None]) -> None:
    """Clean up after a kill inside ``checkpoints/`` (the caller holds the run lock).

    * ``.NAME.tmp-*``: a checkpoint write that never finished: removed.
    * ``.NAME.old-*``: the previous NAME, moved aside by a replacement (:func:`~hybridformer.checkpoint.
      write_checkpoint_dir`). If NAME exists the replacement finished: removed; else it is moved back.
    * ``.NAME.del-*``: a step checkpoint that ``keep_last`` had started to delete: removed.
    * ``step-*`` missing a file, older than a complete one: a half-deleted checkpoint (older code): removed.
    """
    if not checkpoints.is_dir():
        return
    for entry in sorted(checkpoints.iterdir()):
        name = entry.name
        if not name.startswith(".") or entry.is_symlink():
            continue
        base, _, kind = name[1:].rpartition(".")
        if kind.startswith("old-") and not (checkpoints / base).exists():
            os.replace(entry, checkpoints / base)
            log(f"recovered {checkpoints / base} (a kill interrupted its replacement)")
        elif kind.startswith(("tmp-", "old-", "del-")):
            shutil.rmtree(entry, ignore_errors=True)
            log(f"removed {entry.name} (left over from an interrupted write)")
    steps = sorted((p for p in checkpoints.glob("step-*") if p.is_dir() and not p.is_symlink()),
                   key=lambda p: p.name)
    complete = [p for p in steps if is_complete(p)]
    for step in steps:
        if complete and step.name < complete[-1].name and not is_complete(step):
            shutil.rmtree(step, ignore_errors=True)
            log(f"removed {step.name} (half-deleted by an interrupted keep_last cleanup)")
