"""DARE: Drop And REscale task vectors before merging (Yu et al., 2024, "Language Models are Super Mario").

Fine-tuning deltas are highly redundant: dropping each entry with probability ``1 - density``
and dividing the survivors by ``density`` keeps every entry's expected value while making the
task vectors sparse, so they interfere less when combined — by task arithmetic
(``combine="linear"``: base + Σ w_i δ̃_i) or by TIES' sign election and disjoint mean
(``combine="ties"``). The drop is seeded per (seed, tensor name, model), so a merge is
reproducible and independent of the order tensors are visited in.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import torch
from torch import Tensor

from ...errors import ConfigError
from .base import MergeOptions, check_density, task_vectors
from .task_arithmetic import add_scaled
from .ties import disjoint_mean


@dataclass(frozen=True)
class DareOptions(MergeOptions):
    # the paper's drop rate p = 0.9; small models usually want more
    density: float = field(default=0.1, metadata={"help": "fraction of each task vector kept"})
    seed: int = field(default=0, metadata={"help": "seed of the random drop"})
    combine: str = field(default="linear", metadata={"help": "combine the sparse task vectors by linear|ties"})


class Dare:
    needs_base = True
    takes_weights = True
    options = DareOptions

    def check(self, num_models: int, options: DareOptions) -> None:
        check_density("dare", options.density)
        if options.seed < 0:
            raise ConfigError(f"dare: seed must be >= 0, got {options.seed}")
        if options.combine not in ("linear", "ties"):
            raise ConfigError(f"dare: combine must be 'linear' or 'ties', got {options.combine!r}")
        if options.combine == "ties" and any(w <= 0 for w in options.weights):
            raise ConfigError(f"dare with combine='ties': weights {list(options.weights)} must be positive")

    def merge(self, name: str, models: list[Tensor], base: Tensor | None, options: DareOptions) -> Tensor:
        deltas = [drop_and_rescale(delta, options.density, generator(options.seed, name, i))
                  for i, delta in enumerate(task_vectors(models, base))]
        if options.combine == "ties":
            return base + disjoint_mean(deltas, options.weights)
        return add_scaled(base, deltas, options.weights)


def drop_and_rescale(delta: Tensor, density: float, gen: torch.Generator) -> Tensor:
    """Keep each entry with probability ``density`` and divide it by ``density`` (E[result] = delta)."""
    if density >= 1.0:
        return delta
    keep = torch.rand(delta.shape, generator=gen, dtype=torch.float64, device=delta.device) < density
    return delta * keep / density


def generator(seed: int, name: str, index: int) -> torch.Generator:
    """A generator seeded by (seed, tensor name, model index): reproducible in any visiting order.

    The three are hashed into 32 bits because torch's CPU generator (mt19937) ignores higher seed bits.
    """
    digest = hashlib.blake2b(f"{seed}\0{name}\0{index}".encode(), digest_size=4).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest, "little"))
