"""Task arithmetic: base + Σ λ_i (model_i − base) (Ilharco et al., 2023, "Editing models with task arithmetic").

Each fine-tuned model's difference from the shared base is a "task vector"; adding scaled task
vectors to the base combines the skills. ``weights`` are the λ_i, used as given (default 1 each;
λ_i = 1/N gives the plain average of the models).
"""

from __future__ import annotations

from torch import Tensor

from .base import MergeOptions, task_vectors


class TaskArithmetic:
    needs_base = True
    takes_weights = True
    options = MergeOptions

    def check(self, num_models: int, options: MergeOptions) -> None:
        pass

    def merge(self, name: str, models: list[Tensor], base: Tensor | None, options: MergeOptions) -> Tensor:
        return add_scaled(base, task_vectors(models, base), options.weights)


def add_scaled(base: Tensor, deltas: list[Tensor], weights: tuple[float, ...]) -> Tensor:
    merged = base.clone()
    for delta, weight in zip(deltas, weights, strict=True):
        merged += weight * delta
    return merged
