"""SLERP: spherical linear interpolation between two models, tensor by tensor (Shoemake, 1985).

Linear interpolation shrinks the norm of two diverging weight vectors; moving along the arc
between their directions keeps it (two orthogonal vectors of equal norm interpolate to that
norm). As in mergekit (Goddard et al., 2024), the angle comes from the normalised vectors and
the coefficients apply to the originals; nearly parallel (or zero) tensors fall back to lerp,
where the arc and the chord agree and the formula would divide by sin Ω ≈ 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor

from ...errors import ConfigError
from .base import MergeOptions

PARALLEL = 0.9995  # |cos Ω| above this: lerp


@dataclass(frozen=True)
class SlerpOptions(MergeOptions):
    t: float = field(default=0.5, metadata={"help": "position on the arc: 0 = first checkpoint, 1 = second"})


class Slerp:
    needs_base = False
    takes_weights = False
    options = SlerpOptions

    def check(self, num_models: int, options: SlerpOptions) -> None:
        if num_models != 2:
            raise ConfigError(f"slerp merges exactly 2 checkpoints, got {num_models}; use linear for more")
        if not 0.0 <= options.t <= 1.0:
            raise ConfigError(f"slerp: t must be in [0, 1] (0 = first checkpoint, 1 = second), got {options.t}")

    def merge(self, name: str, models: list[Tensor], base: Tensor | None, options: SlerpOptions) -> Tensor:
        return slerp(models[0], models[1], options.t)


def slerp(a: Tensor, b: Tensor, t: float) -> Tensor:
    """sin((1-t)Ω)/sin Ω · a + sin(tΩ)/sin Ω · b with cos Ω = <a, b> / (|a| |b|)."""
    norm_a, norm_b = torch.linalg.vector_norm(a), torch.linalg.vector_norm(b)
    if norm_a == 0 or norm_b == 0:
        return (1 - t) * a + t * b
    cos = float((a * b).sum() / (norm_a * norm_b))
    if abs(cos) > PARALLEL:
        return (1 - t) * a + t * b
    omega = math.acos(max(-1.0, min(1.0, cos)))
    sin_omega = math.sin(omega)
    return (math.sin((1 - t) * omega) / sin_omega) * a + (math.sin(t * omega) / sin_omega) * b
