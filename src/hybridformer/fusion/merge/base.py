"""The one interface every merge method implements; each method declares its own options.

A method merges one tensor at a time (``merge(name, models, base, options)``), so every method
streams over safetensors files through the same loop (``fusion/streaming.py``). As in mergekit,
a method declares what it takes: ``needs_base`` (it works on task vectors ``model - base``),
``takes_weights`` (one weight per model) and ``options``, a frozen dataclass extending
:class:`MergeOptions` whose fields are its own options with their defaults and help
(``field(metadata={"help": ...})``). The API and the CLI read these declarations and know no
method by name, so adding a method is one file plus one line in ``METHODS`` (``registry.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Protocol

from torch import Tensor

from ...errors import ConfigError


@dataclass(frozen=True)
class MergeOptions:
    """What every method is given: one weight per model (defaults already filled in). A method
    with options of its own declares them in a subclass."""

    weights: tuple[float, ...]


class MergeMethod(Protocol):
    """``needs_base``: merges task vectors ``model - base``; ``takes_weights``: uses one weight per
    model; ``options``: its options dataclass; ``check`` rejects values it cannot use (ConfigError)."""

    needs_base: ClassVar[bool]
    takes_weights: ClassVar[bool]
    options: ClassVar[type[MergeOptions]]

    def check(self, num_models: int, options: MergeOptions) -> None: ...

    def merge(self, name: str, models: list[Tensor], base: Tensor | None, options: MergeOptions) -> Tensor: ...


def task_vectors(models: list[Tensor], base: Tensor) -> list[Tensor]:
    """``model - base`` for each model: what fine-tuning added (Ilharco et al., 2023)."""
    return [model - base for model in models]


def check_density(method: str, density: float) -> None:
    """TIES / DARE keep a fraction of each task vector: it must be in (0, 1]."""
    if not 0.0 < density <= 1.0:
        raise ConfigError(f"{method}: density must be in (0, 1], got {density}")
