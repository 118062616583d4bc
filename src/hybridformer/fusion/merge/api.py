"""``merge_checkpoints``: check the options once, then stream every tensor through one merge method."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from ...errors import ConfigError
from ..streaming import fuse_checkpoints
from . import METHODS
from .base import MergeOptions


def merge_checkpoints(
    paths: Sequence[str | Path], method: str, out: str | Path, *, base: str | Path | None = None,
    weights: Sequence[float] | None = None, density: float | None = None, t: float = 0.5, seed: int = 0,
    combine: str = "linear",
) -> Path:
    """Merge the checkpoints ``paths`` with ``method`` (a name in ``METHODS``) into the checkpoint ``out``.

    ``base`` is the shared starting point that task_arithmetic / ties / dare subtract (and the
    others refuse); ``weights`` has one number per checkpoint (linear: relative weights; task
    arithmetic, dare-linear: the λ scales; ties, dare-ties: vote weights); ``density`` is the
    fraction of each task vector TIES/DARE keep; ``t`` the SLERP position; ``seed`` DARE's drop;
    ``combine`` how DARE combines ('linear' or 'ties'). Returns ``out``.
    """
    merger = METHODS.get(method)
    if merger is None:
        raise ConfigError(f"unknown merge method {method!r}; allowed: {', '.join(METHODS)}")
    options = resolve_options(method, len(paths), base=base, weights=weights, density=density, t=t, seed=seed,
                              combine=combine)

    def fuse(name, models, base_tensor):
        return merger.merge(name, models, base_tensor, options)

    meta = {"method": method, **asdict(options)}
    return fuse_checkpoints(paths, out, fuse, base=base if merger.needs_base else None, meta=meta)


def resolve_options(
    method: str, num_models: int, *, base: str | Path | None, weights: Sequence[float] | None,
    density: float | None, t: float = 0.5, seed: int = 0, combine: str = "linear",
) -> MergeOptions:
    """Validate the options against ``method`` and fill in its defaults (ConfigError says what to change)."""
    merger = METHODS[method]
    if num_models < 1:
        raise ConfigError(f"{method}: give at least one checkpoint to merge")
    if merger.needs_base and base is None:
        raise ConfigError(f"{method} works on differences from a base model; pass --base CKPT (base=...)")
    if not merger.needs_base and base is not None:
        raise ConfigError(f"{method} does not use a base model; drop --base (or use task_arithmetic, ties, dare)")
    if merger.default_density is None and density is not None:
        raise ConfigError(f"{method} does not use density; only ties and dare do")
    density = merger.default_density if density is None else density
    if density is not None and not 0.0 < density <= 1.0:
        raise ConfigError(f"{method}: density must be in (0, 1], got {density}")
    if weights is None:
        weights = [1.0] * num_models
    elif method == "slerp":
        raise ConfigError("slerp takes t (--t, 0 = first checkpoint, 1 = second), not weights")
    if len(weights) != num_models:
        raise ConfigError(f"{method}: {len(weights)} weights for {num_models} checkpoints; give one per checkpoint")
    if seed < 0:
        raise ConfigError(f"seed must be >= 0, got {seed}")
    options = MergeOptions(weights=tuple(float(w) for w in weights), density=1.0 if density is None else density,
                           t=t, seed=seed, combine=combine)  # type: ignore[arg-type]
    merger.check(num_models, options)
    return options
