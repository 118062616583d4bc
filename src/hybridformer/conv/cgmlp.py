"""Branchformer's convolutional gating MLP and E-Branchformer's convolutional merge.

cgMLP (Peng et al., 2022, "Branchformer"; after Sakuma et al.'s gMLP): Linear (d → n) → GELU,
split into halves (a, b); the spatial gating unit gates ``a`` with a depthwise-convolved,
normalised ``b``; Linear (n/2 → d). It is the local branch beside self-attention.

E-Branchformer (Kim et al., 2022) merges the two branches with a depthwise convolution over
their concatenation before the projection, so the merge itself sees neighbouring positions.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..context import MixerContext
from ..norm import build_norm
from .common import DepthwiseConv


class ConvGatedMLP(nn.Module):
    """cgMLP mixer: ``W_out · (a ⊙ conv(norm(b)))`` with ``[a; b] = GELU(W_in x)``."""

    def __init__(self, d_model: int, hidden: int, kernel_size: int, *, norm: str = "layernorm",
                 dropout: float = 0.0) -> None:
        super().__init__()
        self.in_proj = nn.Linear(d_model, hidden)
        self.gate_norm = build_norm(norm, hidden // 2)
        self.gate_conv = DepthwiseConv(hidden // 2, kernel_size)
        self.out_proj = nn.Linear(hidden // 2, d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, ctx: MixerContext) -> Tensor:
        """x: (batch, L, d_model) -> (batch, L, d_model)."""
        a, b = F.gelu(self.in_proj(x)).chunk(2, dim=-1)
        gated = a * self.gate_conv(self.gate_norm(b), ctx)
        return self.out_proj(self.dropout(gated))


class DepthwiseConvMerge(nn.Module):
    """E-Branchformer merge: ``Linear([y1; y2] + DWConv([y1; y2]))`` over the branch outputs."""

    def __init__(self, d_model: int, branches: int, kernel_size: int) -> None:
        super().__init__()
        self.conv = DepthwiseConv(branches * d_model, kernel_size)
        self.proj = nn.Linear(branches * d_model, d_model)

    def forward(self, outputs: list[Tensor], ctx: MixerContext) -> Tensor:
        """outputs: branch results, each (batch, L, d_model) -> (batch, L, d_model)."""
        joined = torch.cat(outputs, dim=-1)
        return self.proj(joined + self.conv(joined, ctx))
