"""Lightweight convolution (Wu et al., 2019, "Pay Less Attention with Lightweight and Dynamic Convolutions").

A depthwise convolution whose kernels are softmax-normalised over the window and shared by all
channels of a head: ``H · k`` weights instead of ``d · k``, and each output a convex combination
of its neighbours, like an attention with fixed, position-relative weights.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..context import MixerContext
from .common import conv_window, depthwise_conv


class LightweightConv(nn.Module):
    """softmax(W_h) over the window, W: (heads, k), channel c uses head c // (channels / heads)."""

    def __init__(self, channels: int, kernel_size: int, heads: int, *, weight_dropout: float = 0.0) -> None:
        super().__init__()
        self.channels, self.kernel_size, self.heads = channels, kernel_size, heads
        self.weight_dropout = weight_dropout
        self.weight = nn.Parameter(torch.empty(heads, kernel_size))
        nn.init.xavier_uniform_(self.weight)

    def kernel(self) -> Tensor:
        """(channels, k) normalised, head-shared kernels; DropConnect on the weights while training."""
        weight = torch.softmax(self.weight, dim=-1)
        weight = F.dropout(weight, self.weight_dropout, self.training)
        return weight.repeat_interleave(self.channels // self.heads, dim=0)

    def forward(self, x: Tensor, ctx: MixerContext) -> Tensor:
        """x: (batch, L, channels) -> (batch, L, channels)."""
        return depthwise_conv(conv_window(x, ctx, self, self.kernel_size), self.kernel())


class ConvBlock(nn.Module):
    """Wu et al.'s block around a lightweight/dynamic convolution: Linear → GLU → conv → Linear.

    ``in_dim`` channels in and out (the whole width, or Lite Transformer's convolution share).
    """

    def __init__(self, in_dim: int, conv: nn.Module, *, dropout: float = 0.0) -> None:
        super().__init__()
        self.in_proj = nn.Linear(in_dim, 2 * in_dim)
        self.conv = conv
        self.out_proj = nn.Linear(in_dim, in_dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, ctx: MixerContext) -> Tensor:
        """x: (batch, L, in_dim) -> (batch, L, in_dim)."""
        h = self.conv(F.glu(self.in_proj(x), dim=-1), ctx)
        return self.out_proj(self.dropout(h))
