"""``train.precision: auto``: time a few training steps of the actual model in fp32 and under bf16
autocast, and train in bf16 only where it measured faster.

bf16 autocast pays only on hardware with bf16 units (CPUs with AVX512-BF16 or AMX, Ampere+ GPUs);
elsewhere it emulates the narrow type and runs slower than fp32. fp16 is never a candidate: on
CPUs it is emulated (66x slower than fp32 on this project's machine, docs/RESULTS.md) and on GPUs it
needs loss scaling, which this loop does not do. The choice is made once, at the start of a run,
and recorded in every step checkpoint's trainer state, so ``--resume`` continues in the same
precision without probing again (see docs/training.md for what that means across machines).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import torch

from . import distributed as D

CANDIDATES = ("fp32", "bf16")
PROBE_STEPS = 3  # timed steps per precision, after one untimed warm-up step each
MARGIN = 0.9  # bf16 must take at most 90% of fp32's time: a tie keeps the exact, portable fp32


def choose_precision(seconds: dict[str, float], margin: float = MARGIN) -> str:
    """``bf16`` when its step took at most ``margin`` × fp32's; ``fp32`` otherwise or when bf16 failed."""
    bf16, fp32 = seconds.get("bf16", float("inf")), seconds.get("fp32", float("inf"))
    return "bf16" if bf16 <= margin * fp32 else "fp32"


def bf16_possible(device_type: str) -> bool:
    """Whether bf16 autocast can run at all here (whether it is fast is the probe's business)."""
    if device_type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device_type == "cpu"


def measure(step: Callable[[str], None], precisions: tuple[str, ...], *, steps: int = PROBE_STEPS,
            timer: Callable[[], float] = time.perf_counter) -> dict[str, float]:
    """Fastest of ``steps`` timed calls of ``step(precision)`` per precision, interleaved so that load
    from other processes hits both alike; a precision whose step raises is left out."""
    working = []
    for precision in precisions:  # untimed warm-up: first-call allocation and kernel selection
        try:
            step(precision)
            working.append(precision)
        except RuntimeError:
            continue
    best = dict.fromkeys(working, float("inf"))
    for _ in range(steps):
        for precision in working:
            started = timer()
            step(precision)
            best[precision] = min(best[precision], timer() - started)
    return best


def resolve_precision(requested: str, saved: str | None, step: Callable[[str], None], device_type: str,
                      log: Callable[[str], None], agree: Callable[[dict[str, float]], dict[str, float]] = dict,
                      ) -> tuple[str, dict[str, float]]:
    """The precision to train in and the probe's seconds per step (empty when nothing was probed).

    ``requested`` fp32/bf16 is used as given; ``auto`` keeps ``saved`` (the choice recorded in the run
    being resumed) or else probes. ``agree`` combines the seconds across processes so every rank of
    a distributed run makes the same choice.
    """
    if requested != "auto":
        return requested, {}
    if saved in CANDIDATES:
        log(f"precision: {saved} (chosen by the start-up probe of this run; kept on resume)")
        return saved, {}
    candidates = CANDIDATES if bf16_possible(device_type) else ("fp32",)
    seconds = agree(measure(step, candidates))
    choice = choose_precision(seconds)
    timings = ", ".join(f"{name} {1000 * value:.1f} ms" for name, value in seconds.items())
    log(f"precision: auto chose {choice} on {device_type} (probe, fastest of {PROBE_STEPS} steps: {timings})")
    return choice, seconds


def summed(env: D.DistEnv) -> Callable[[dict[str, float]], dict[str, float]]:
    """``agree`` for :func:`resolve_precision`: every rank sees the seconds summed over all ranks."""

    def agree(seconds: dict[str, float]) -> dict[str, float]:
        if not env.active:
            return seconds
        values = torch.tensor([seconds.get(name, math.inf) for name in CANDIDATES], dtype=torch.float64)
        D.all_reduce_sum(values, env)
        return {name: value for name, value in zip(CANDIDATES, values.tolist(), strict=True) if math.isfinite(value)}

    return agree
