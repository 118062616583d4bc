"""Additive score biases for relative positions: ALiBi and T5 relative buckets.

A bias is a function of absolute query and key positions, so a kernel can evaluate it on any
block of queries and keys (a chunk, a window, one decoding step) without an L x L table.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ..context import ScoreBias


class ALiBi(nn.Module):
    """Attention with Linear Biases (Press et al., 2022): head-specific linear distance penalties."""

    def __init__(self, heads: int) -> None:
        super().__init__()
        self.register_buffer("slopes", alibi_slopes(heads), persistent=False)

    def scores(self, q_pos: Tensor, k_pos: Tensor) -> Tensor:
        distance = (q_pos - k_pos).abs().to(self.slopes.dtype)
        return -self.slopes.view(-1, *([1] * distance.dim())) * distance

    def forward(self, q_pos: Tensor, k_pos: Tensor) -> ScoreBias:
        return ScoreBias(self.scores, q_pos, k_pos, slopes=self.slopes)


def alibi_slopes(heads: int) -> Tensor:
    """Geometric slopes 2^(-8i/n); for a non-power-of-two count, interleave the next power's."""
    def powers(n: int) -> list[float]:
        start = 2 ** (-8 / n)
        return [start ** (i + 1) for i in range(n)]

    closest = 2 ** math.floor(math.log2(heads))
    slopes = powers(closest)
    if closest < heads:
        slopes += powers(2 * closest)[0::2][: heads - closest]
    return torch.tensor(slopes)


class T5RelativeBias(nn.Module):
    """T5's learned bias per head over log-spaced relative-distance buckets (Raffel et al., 2020)."""

    def __init__(self, heads: int, *, num_buckets: int = 32, max_distance: int = 128, bidirectional: bool = True):
        super().__init__()
        self.table = nn.Embedding(num_buckets, heads)
        self.num_buckets, self.max_distance, self.bidirectional = num_buckets, max_distance, bidirectional

    def bucket(self, relative: Tensor) -> Tensor:
        """Bucket index of ``key_pos - query_pos``: exact for small distances, logarithmic beyond."""
        buckets = self.num_buckets
        offset = torch.zeros_like(relative)
        if self.bidirectional:
            buckets //= 2
            offset = (relative > 0).long() * buckets
            distance = relative.abs()
        else:
            distance = (-relative).clamp(min=0)
        exact = buckets // 2
        log_ratio = torch.log(distance.float().clamp(min=1) / exact) / math.log(self.max_distance / exact)
        far = (exact + (log_ratio * (buckets - exact)).long()).clamp(max=buckets - 1)
        return offset + torch.where(distance < exact, distance, far)

    def scores(self, q_pos: Tensor, k_pos: Tensor) -> Tensor:
        values = self.table(self.bucket(k_pos - q_pos))  # (..., heads)
        return values.movedim(-1, 0)

    def forward(self, q_pos: Tensor, k_pos: Tensor) -> ScoreBias:
        return ScoreBias(self.scores, q_pos, k_pos)
