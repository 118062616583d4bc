"""Learning-rate schedules as pure functions of the step, so resuming needs no scheduler state.

``inverse_sqrt``: linear warmup, then ``lr * sqrt(warmup / step)`` (Vaswani et al., 2017).
``cosine``: linear warmup, then half a cosine down to ``min_lr`` at ``total_steps`` (Loshchilov &
Hutter, 2017). ``linear``: warmup then a straight line to ``min_lr``. ``constant``: warmup then flat.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from ..errors import ConfigError

SCHEDULES = ("inverse_sqrt", "cosine", "linear", "constant")


def build_schedule(name: str, *, lr: float, warmup_steps: int, total_steps: int, min_lr: float = 0.0,
                   ) -> Callable[[int], float]:
    """``schedule(step) -> learning rate`` for optimizer step ``step`` (1-based)."""
    if name not in SCHEDULES:
        raise ConfigError(f"train.schedule: unknown {name!r}; allowed: {', '.join(SCHEDULES)}")

    def schedule(step: int) -> float:
        if warmup_steps and step <= warmup_steps:
            return lr * step / warmup_steps
        if name == "constant":
            return lr
        if name == "inverse_sqrt":
            return max(min_lr, lr * math.sqrt(max(warmup_steps, 1) / step))
        span = max(total_steps - warmup_steps, 1)
        progress = min(1.0, (step - warmup_steps) / span)
        if name == "linear":
            return lr + (min_lr - lr) * progress
        return min_lr + 0.5 * (lr - min_lr) * (1.0 + math.cos(math.pi * progress))

    return schedule
