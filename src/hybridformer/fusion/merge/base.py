"""The one interface every merge method implements, and the options they share.

A method merges one tensor at a time (``merge(name, models, base, options)``), so every method
streams over safetensors files through the same loop (``fusion/streaming.py``). Adding a
method means adding one file with one class and one line in ``METHODS``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

from torch import Tensor


@dataclass(frozen=True)
class MergeOptions:
    """Resolved options: ``weights`` has one entry per model (defaults already filled in)."""

    weights: tuple[float, ...]
    density: float = 1.0  # TIES / DARE: fraction of each task vector kept
    t: float = 0.5  # SLERP: 0 = first model, 1 = second
    seed: int = 0  # DARE's random drop
    combine: Literal["linear", "ties"] = "linear"  # DARE: how the sparsified task vectors are combined


class MergeMethod(Protocol):
    """``needs_base``: the method works on task vectors ``model - base``; ``default_density``: None
    when the method does not use ``density``; ``check`` rejects options it cannot use (ConfigError)."""

    needs_base: bool
    default_density: float | None

    def check(self, num_models: int, options: MergeOptions) -> None: ...

    def merge(self, name: str, models: list[Tensor], base: Tensor | None, options: MergeOptions) -> Tensor: ...


def task_vectors(models: list[Tensor], base: Tensor) -> list[Tensor]:
    """``model - base`` for each model: what fine-tuning added (Ilharco et al., 2023)."""
    return [model - base for model in models]
