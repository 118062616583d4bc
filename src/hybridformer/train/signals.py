"""Ctrl-C and SIGTERM during training: finish the step, save a checkpoint, stop (exit status 128 + signal).

The first signal only sets a flag that the loop reads at the next step boundary, so the checkpoint it
saves resumes exactly. A second signal stops at once (``KeyboardInterrupt``); the checkpoints already
written are atomic, so nothing is lost but the steps since the last one.
"""

from __future__ import annotations

import signal
import sys
import threading
from types import FrameType

import torch

from . import distributed as D

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopSignals:
    """Installs the handlers on creation (main thread only); ``restore()`` puts the previous ones back."""

    def __init__(self) -> None:
        self.signal: int | None = None
        self._previous: dict[int, object] = {}
        if threading.current_thread() is threading.main_thread():
            for sig in SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)

    @property
    def name(self) -> str:
        return signal.Signals(self.signal).name if self.signal else "a signal"

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signal is not None:  # the second Ctrl-C: stop now
            self.restore()
            raise KeyboardInterrupt
        self.signal = signum
        print(f"\n{signal.Signals(signum).name}: saving a checkpoint after this step (again to stop at once)",
              flush=True, file=sys.stderr)

    def requested(self, env: D.DistEnv) -> bool:
        """True on every rank when any rank got a signal (all stop at the same step)."""
        if not env.active:
            return self.signal is not None
        flag = torch.tensor([float(self.signal or 0)], dtype=torch.float64)
        D.all_reduce_sum(flag, env)
        if flag.item() and self.signal is None:
            self.signal = signal.SIGTERM
        return bool(flag.item())

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}
