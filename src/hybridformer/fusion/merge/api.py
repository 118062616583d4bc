"""``merge_checkpoints``: check the options once against the method's declaration, then stream
every tensor through that method. Nothing here knows a method by name."""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ...errors import ConfigError
from ..streaming import fuse_checkpoints
from .base import MergeMethod, MergeOptions
from .registry import METHODS


def merge_checkpoints(
    paths: Sequence[str | Path], method: str, out: str | Path, *, base: str | Path | None = None,
    weights: Sequence[float] | None = None, **options: Any,
) -> Path:
    """Merge the checkpoints ``paths`` with ``method`` (a name in ``METHODS``) into the checkpoint ``out``.

    ``base`` is the shared starting point that task_arithmetic / ties / dare subtract (and the
    others refuse); ``weights`` has one number per checkpoint (linear: relative weights; task
    arithmetic, dare-linear: the λ scales; ties, dare-ties: vote weights). ``options`` are the
    method's own (see :func:`method_options`): ties/dare ``density`` (fraction of each task vector
    kept), slerp ``t`` (position), dare ``seed`` and ``combine`` ('linear' or 'ties'); ``None``
    means the method's default. Returns ``out``.
    """
    merger = _method(method)
    resolved = resolve_options(method, len(paths), base=base, weights=weights, **options)

    def fuse(name, models, base_tensor):
        return merger.merge(name, models, base_tensor, resolved)

    meta = {"method": method, **dataclasses.asdict(resolved)}
    return fuse_checkpoints(paths, out, fuse, base=base if merger.needs_base else None, meta=meta)


def method_options(method: str) -> dict[str, dataclasses.Field]:
    """The options ``method`` declares (beyond ``weights``), by name, with their defaults and help."""
    return {f.name: f for f in dataclasses.fields(_method(method).options) if f.name != "weights"}


def describe_methods() -> dict[str, str]:
    """Each method -> what it takes (``--base``, ``--weights``, its options with defaults and help): the text
    ``merge --help`` shows (kept in :mod:`hybridformer.names`, which must not import torch)."""
    described = {}
    for name, merger in METHODS.items():
        takes = ["--base"] if merger.needs_base else []
        takes += ["--weights"] if merger.takes_weights else []
        takes += [f"{f.name} (default {f.default!r}: {f.metadata.get('help', '')})"
                  for f in method_options(name).values()]
        described[name] = "; ".join(takes) or "no options"
    return described


def resolve_options(
    method: str, num_models: int, *, base: str | Path | None = None, weights: Sequence[float] | None = None,
    **options: Any,
) -> MergeOptions:
    """Validate the options against ``method``'s declaration and fill in its defaults (a ConfigError
    says what to change)."""
    merger = _method(method)
    if num_models < 1:
        raise ConfigError(f"{method}: give at least one checkpoint to merge")
    if merger.needs_base and base is None:
        raise ConfigError(f"{method} works on differences from a base model; pass --base CKPT (base=...)")
    if not merger.needs_base and base is not None:
        users = ", ".join(name for name, m in METHODS.items() if m.needs_base)
        raise ConfigError(f"{method} does not use a base model; drop --base (or use {users})")
    declared = method_options(method)
    given = {name: value for name, value in options.items() if value is not None}
    unknown = sorted(set(given) - set(declared))
    if unknown:
        raise ConfigError(f"{method} does not use {', '.join(unknown)}; its options: "
                          f"{', '.join(declared) or '(none)'}")
    if weights is not None and not merger.takes_weights:
        raise ConfigError(f"{method} takes {', '.join(declared) or 'no options'}, not weights")
    weights = [1.0] * num_models if weights is None else list(weights)
    if len(weights) != num_models:
        raise ConfigError(f"{method}: {len(weights)} weights for {num_models} checkpoints; give one per checkpoint")
    hints = typing.get_type_hints(merger.options)
    values = {name: _typed(method, name, value, hints[name]) for name, value in given.items()}
    resolved = merger.options(weights=tuple(float(w) for w in weights), **values)
    merger.check(num_models, resolved)
    return resolved


def _method(method: str) -> MergeMethod:
    merger = METHODS.get(method)
    if merger is None:
        raise ConfigError(f"unknown merge method {method!r}; allowed: {', '.join(METHODS)}")
    return merger


def _typed(method: str, name: str, value: Any, kind: type) -> Any:
    """``value`` as the declared type (an int is a valid float; a bool is never a number)."""
    if kind is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, kind) and not (kind is int and isinstance(value, bool)):
        return value
    raise ConfigError(f"{method}: option {name} must be {kind.__name__}, got {value!r}")
