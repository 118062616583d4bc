"""Linear merge: the weighted mean of the models' weights — a "model soup" (Wortsman et al., 2022).

Fine-tuned models that share a pre-trained starting point often lie in one basin, where the
average of their weights scores better than each of them. Weights are relative (divided by
their sum), so ``(1, 0)`` returns the first model and equal weights the plain mean.
"""

from __future__ import annotations

from torch import Tensor

from ...errors import ConfigError
from .base import MergeOptions


class Linear:
    needs_base = False
    takes_weights = True
    options = MergeOptions

    def check(self, num_models: int, options: MergeOptions) -> None:
        if sum(options.weights) <= 0:
            raise ConfigError(f"linear merge: weights {list(options.weights)} must sum to a positive number")

    def merge(self, name: str, models: list[Tensor], base: Tensor | None, options: MergeOptions) -> Tensor:
        return weighted_mean(models, options.weights)


def weighted_mean(tensors: list[Tensor], weights: tuple[float, ...]) -> Tensor:
    """Σ w_i x_i / Σ w_i (the sum is taken first so equal inputs come back bit-exact)."""
    total = tensors[0] * weights[0]
    for tensor, weight in zip(tensors[1:], weights[1:], strict=True):
        total.add_(tensor, alpha=weight)
    return total.div_(sum(weights))
