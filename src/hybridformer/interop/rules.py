"""Tensor mapping rules: one declaration per tensor drives both conversion and export.

A :class:`Rule` says that our tensor ``ours`` is the row-wise concatenation of the source tensors
``theirs`` (one name = a copy), each optionally transposed (GPT-2's ``Conv1D`` stores ``(in, out)``).
Conversion concatenates; export splits by the sizes of the parts and transposes back, so a round
trip is exact by construction.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import Tensor

from ..errors import CheckpointError


@dataclass(frozen=True)
class Rule:
    ours: str
    theirs: tuple[str, ...]
    sizes: tuple[int, ...] | None = None  # rows of each part when several are concatenated
    transpose: bool = False  # the source stores the transpose (HF Conv1D)
    convert: Callable[[Tensor], Tensor] | None = None  # source layout -> ours (e.g. undo a permutation)
    restore: Callable[[Tensor], Tensor] | None = None  # ours -> source layout (inverse of ``convert``)

    def build(self, get: Callable[[str], Tensor]) -> Tensor:
        """Our tensor from the source tensors (``get(name)`` reads one, lazily)."""
        parts = [get(name) for name in self.theirs]
        parts = [part.t() if self.transpose else part for part in parts]
        tensor = parts[0] if len(parts) == 1 else torch.cat(parts, dim=0)
        return self.convert(tensor) if self.convert is not None else tensor

    def split(self, tensor: Tensor) -> Iterator[tuple[str, Tensor]]:
        """The source tensors ``(name, tensor)`` that make up our ``tensor`` (the inverse of :meth:`build`)."""
        if self.restore is not None:
            tensor = self.restore(tensor)
        parts = [tensor] if len(self.theirs) == 1 else tensor.split(list(self.sizes), dim=0)
        for name, part in zip(self.theirs, parts, strict=True):
            yield name, (part.t() if self.transpose else part).contiguous()


def check_sources(rules: list[Rule], available: set[str], where: str) -> None:
    """Every source tensor the rules need exists (a missing one is a one-line error naming it)."""
    missing = [name for rule in rules for name in rule.theirs if name not in available]
    if missing:
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        raise CheckpointError(f"{where}: missing tensor(s) {', '.join(missing[:3])}{more}")
