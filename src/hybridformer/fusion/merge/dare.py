"""DARE: Drop And REscale task vectors before merging (Yu et al., 2024, "Language Models are Super Mario").

Fine-tuning deltas are highly redundant: dropping each entry with probability ``1 - density``
and dividing the survivors by ``density`` keeps every entry's expected value while making the
task vectors sparse, so they interfere less when combined — by task arithmetic
(``combine="linear"``: base + Σ w_i δ̃_i) or by TIES' sign election and disjoint mean
(``combine="ties"``). The drop is seeded per (seed, tensor name, model), so a merge is
reproducible and independent of the order tensors are visited in.

mergekit's conventions are options (docs/fusion.md): ``rescale="l1"`` scales the survivors so each
task vector keeps its L1 norm (mergekit's ``rescale: true``) instead of dividing by ``density``;
``combine="ties_sum"`` sums the sign-agreeing entries instead of averaging them (mergekit's
``dare_ties`` default, ``normalize: false``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import torch
from torch import Tensor

from ...errors import ConfigError
from .base import MergeOptions, check_density, task_vectors
from .task_arithmetic import add_scaled
from .ties import agreeing_sum, disjoint_mean


@dataclass(frozen=True)
class DareOptions(MergeOptions):
    # the paper's drop rate p = 0.9; small models usually want more
    density: float = field(default=0.1, metadata={"help": "fraction of each task vector kept"})
    seed: int = field(default=0, metadata={"help": "seed of the random drop"})
    combine: str = field(default="linear", metadata={
        "help": "combine the sparse task vectors by linear|ties|ties_sum (ties_sum: mergekit's dare_ties)"})
    rescale: str = field(default="density", metadata={
        "help": "survivors divided by density (the paper) or scaled to keep the L1 norm (l1: mergekit)"})


class Dare:
    needs_base = True
    takes_weights = True
    options = DareOptions

    def check(self, num_models: int, options: DareOptions) -> None:
        check_density("dare", options.density)
        if options.seed < 0:
            raise ConfigError(f"dare: seed must be >= 0, got {options.seed}")
        if options.combine not in ("linear", "ties", "ties_sum"):
            raise ConfigError(f"dare: combine must be 'linear', 'ties' or 'ties_sum', got {options.combine!r}")
        if options.rescale not in ("density", "l1"):
            raise ConfigError(f"dare: rescale must be 'density' or 'l1', got {options.rescale!r}")
        if options.combine != "linear" and any(w <= 0 for w in options.weights):
            raise ConfigError(f"dare with combine={options.combine!r}: weights {list(options.weights)} must be "
                              "positive")

    def merge(self, name: str, models: list[Tensor], base: Tensor | None, options: DareOptions) -> Tensor:
        deltas = [drop_and_rescale(delta, options.density, generator(options.seed, name, i), options.rescale)
                  for i, delta in enumerate(task_vectors(models, base))]
        return combine(base, deltas, options.weights, options.combine)


def combine(base: Tensor, deltas: list[Tensor], weights: tuple[float, ...], how: str) -> Tensor:
    """base + the sparse task vectors: Σ w_i δ̃_i (linear), TIES' disjoint mean (ties) or agreeing sum (ties_sum)."""
    if how == "ties":
        return base + disjoint_mean(deltas, weights)
    if how == "ties_sum":
        return base + agreeing_sum(deltas, weights)
    return add_scaled(base, deltas, weights)


def drop_and_rescale(delta: Tensor, density: float, gen: torch.Generator, rescale: str = "density") -> Tensor:
    """Keep each entry with probability ``density``, then :func:`rescale_kept` the survivors."""
    if density >= 1.0:
        return delta
    keep = torch.rand(delta.shape, generator=gen, dtype=torch.float64, device=delta.device) < density
    return rescale_kept(delta, keep, density, rescale)


def rescale_kept(delta: Tensor, keep: Tensor, density: float, rescale: str = "density") -> Tensor:
    """``density``: survivors / density, so E[result] = delta (Yu et al.). ``l1``: survivors scaled by
    ‖δ‖₁ / ‖kept‖₁, left as they are when either norm is below 1e-7 (mergekit ``rescaled_masked_tensor``)."""
    kept = delta * keep
    if rescale == "density":
        return kept / density
    before, after = delta.abs().sum(), kept.abs().sum()
    if before < 1e-7 or after < 1e-7:
        return kept
    return kept * (before / after)


def generator(seed: int, name: str, index: int) -> torch.Generator:
    """A generator seeded by (seed, tensor name, model index): reproducible in any visiting order.

    The three are hashed into 32 bits because torch's CPU generator (mt19937) ignores higher seed bits.
    """
    digest = hashlib.blake2b(f"{seed}\0{name}\0{index}".encode(), digest_size=4).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest, "little"))
