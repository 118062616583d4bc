"""TIES-Merging: trim, elect sign, disjoint merge (Yadav et al., 2023).

Averaging task vectors lets small redundant changes drown out the important ones and lets
opposite-signed changes cancel. TIES keeps the ``density`` fraction of each task vector with
the largest magnitude (trim), elects each parameter's sign by the larger total mass (elect),
and averages only the values that agree with the elected sign (disjoint mean); the result is
added to the base. ``weights`` scale each model's votes and its share of the mean.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from ...errors import ConfigError
from .base import MergeOptions, check_density, task_vectors


@dataclass(frozen=True)
class TiesOptions(MergeOptions):
    density: float = field(default=0.2, metadata={"help": "fraction of each task vector kept (the paper's k = 20%)"})


class Ties:
    needs_base = True
    takes_weights = True
    options = TiesOptions

    def check(self, num_models: int, options: TiesOptions) -> None:
        check_density("ties", options.density)
        if any(w <= 0 for w in options.weights):
            raise ConfigError(f"ties: weights {list(options.weights)} must be positive")

    def merge(self, name: str, models: list[Tensor], base: Tensor | None, options: TiesOptions) -> Tensor:
        trimmed = [trim(delta, options.density) for delta in task_vectors(models, base)]
        return base + disjoint_mean(trimmed, options.weights)


def trim(delta: Tensor, density: float) -> Tensor:
    """Keep the ⌊density · n⌋ entries of largest magnitude (at least one), zero the rest (mergekit's count)."""
    n = delta.numel()
    keep = min(n, max(1, int(density * n)))
    if keep == n:
        return delta
    flat = delta.flatten()
    mask = torch.zeros_like(flat, dtype=torch.bool)
    mask[flat.abs().topk(keep).indices] = True
    return (flat * mask).view_as(delta)


def agreeing(deltas: list[Tensor], weights: tuple[float, ...]) -> tuple[Tensor, Tensor]:
    """Elect each entry's sign by the weighted mass Σ w_i δ_i (a zero sum elects +, as mergekit's ``sum``
    consensus does); return each model's weight where its δ_i has the elected sign (else 0), and the δ_i."""
    stacked = torch.stack(deltas)  # (models, *shape)
    w = torch.tensor(weights, dtype=stacked.dtype, device=stacked.device).view(-1, *([1] * (stacked.dim() - 1)))
    elected = torch.where((w * stacked).sum(0) >= 0, 1.0, -1.0).to(stacked.dtype)
    return w * (torch.sign(stacked) == elected), stacked


def disjoint_mean(deltas: list[Tensor], weights: tuple[float, ...]) -> Tensor:
    """The weighted mean of the δ_i that agree with the elected sign (0 where none does)."""
    share, stacked = agreeing(deltas, weights)
    total = share.sum(0)
    return torch.where(total > 0, (share * stacked).sum(0) / total.clamp(min=1e-300), torch.zeros_like(total))


def agreeing_sum(deltas: list[Tensor], weights: tuple[float, ...]) -> Tensor:
    """Σ w_i δ_i over the δ_i that agree with the elected sign (mergekit's TIES with ``normalize: false``)."""
    share, stacked = agreeing(deltas, weights)
    return (share * stacked).sum(0)
