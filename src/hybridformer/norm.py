"""Normalization layers by name."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class OffsetRMSNorm(nn.RMSNorm):
    """RMSNorm scaling by ``1 + w`` (Gemma): the weight is stored as its offset from one, so it starts at zero.

    Kept in this form (rather than folding the 1 into the weight) so Gemma's weights round-trip bit for bit.
    """

    def __init__(self, d_model: int, eps: float = 1e-6) -> None:
        super().__init__(d_model, eps=eps)
        nn.init.zeros_(self.weight)

    def forward(self, x: Tensor) -> Tensor:
        normed = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return normed * (1.0 + self.weight)


NORMS = {"layernorm": nn.LayerNorm, "rmsnorm": nn.RMSNorm, "offset_rmsnorm": OffsetRMSNorm}


def build_norm(kind: str, d_model: int, eps: float = 1e-5) -> nn.Module:
    return NORMS[kind](d_model, eps=eps)
