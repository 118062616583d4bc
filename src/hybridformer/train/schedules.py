"""Learning-rate schedules as pure functions of the step, so resuming needs no scheduler state.

``inverse_sqrt``: linear warmup, then ``lr * sqrt(warmup / step)`` (Vaswani et al., 2017); with
``decay_fraction`` set, the last fraction of the steps cools down from there to ``min_lr``.
``cosine``: linear warmup, then half a cosine down to ``min_lr`` at ``total_steps`` (Loshchilov &
Hutter, 2017). ``linear``: warmup then a straight line to ``min_lr``. ``constant``: warmup then flat.
``wsd`` (warmup-stable-decay; Zhai et al., 2022; Hu et al., 2024): warmup, a flat ``lr``, then the last
``decay_fraction`` of the steps decays to ``min_lr``. Hägele et al. (2024) find this matches cosine
at the same budget, and that checkpoints averaged over the cool-down beat the last one.

The cool-down shape (``decay_shape``) maps progress ``p`` in [0, 1] through the decay to the share of
``lr - min_lr`` left: ``linear`` 1 - p, ``cosine`` (1 + cos(pi p)) / 2, ``1-sqrt`` 1 - sqrt(p)
(Hägele et al.'s best).
"""

from __future__ import annotations

import math
from collections.abc import Callable

from ..errors import ConfigError

SCHEDULES = ("inverse_sqrt", "cosine", "linear", "constant", "wsd")
DECAY_SHAPES: dict[str, Callable[[float], float]] = {
    "linear": lambda p: 1.0 - p,
    "cosine": lambda p: 0.5 * (1.0 + math.cos(math.pi * p)),
    "1-sqrt": lambda p: 1.0 - math.sqrt(p),
}
WSD_DEFAULT_DECAY = 0.2  # wsd without train.decay_fraction: the last 20% of the steps


def build_schedule(name: str, *, lr: float, warmup_steps: int, total_steps: int, min_lr: float = 0.0,
                   decay_fraction: float | None = None, decay_shape: str = "linear",
                   ) -> Callable[[int], float]:
    """``schedule(step) -> learning rate`` for optimizer step ``step`` (1-based).

    ``decay_fraction``: the share of ``total_steps`` in the final cool-down (``wsd``: default 0.2;
    ``inverse_sqrt``: none unless given). The cool-down starts after step ``total_steps - round(
    decay_fraction * total_steps)`` and reaches ``min_lr`` exactly at ``total_steps``.
    """
    if name not in SCHEDULES:
        raise ConfigError(f"train.schedule: unknown {name!r}; allowed: {', '.join(SCHEDULES)}")
    if decay_shape not in DECAY_SHAPES:
        raise ConfigError(f"train.decay_shape: unknown {decay_shape!r}; allowed: {', '.join(DECAY_SHAPES)}")
    if decay_fraction is not None and name not in ("wsd", "inverse_sqrt"):
        raise ConfigError(f"train.decay_fraction applies to schedule wsd or inverse_sqrt, not {name!r} "
                          "(cosine and linear already decay over the whole run)")
    if name == "wsd" and decay_fraction is None:
        decay_fraction = WSD_DEFAULT_DECAY
    decay_steps = round(decay_fraction * total_steps) if decay_fraction else 0
    decay_start = max(total_steps - decay_steps, warmup_steps)
    shape = DECAY_SHAPES[decay_shape]

    def main_phase(step: int) -> float:
        """The schedule without its final cool-down."""
        if warmup_steps and step <= warmup_steps:
            return lr * step / warmup_steps
        if name in ("constant", "wsd"):
            return lr
        if name == "inverse_sqrt":
            return max(min_lr, lr * math.sqrt(max(warmup_steps, 1) / step))
        span = max(total_steps - warmup_steps, 1)
        progress = min(1.0, (step - warmup_steps) / span)
        if name == "linear":
            return lr + (min_lr - lr) * progress
        return min_lr + 0.5 * (lr - min_lr) * (1.0 + math.cos(math.pi * progress))

    peak = main_phase(decay_start) if decay_steps else lr  # where the cool-down starts from

    def schedule(step: int) -> float:
        if not decay_steps or step <= decay_start:
            return main_phase(step)
        progress = min(1.0, (step - decay_start) / max(total_steps - decay_start, 1))
        return min_lr + (peak - min_lr) * shape(progress)

    return schedule
