"""Dynamic convolution (Wu et al., 2019): a lightweight convolution whose kernel is predicted per position.

At position t the kernel is ``softmax(W x_t)`` reshaped to (heads, k), shared by the channels of
each head. It depends only on the current input, so cost stays linear in length and a causal
version never looks ahead.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from ..context import MixerContext
from .common import conv_window


class DynamicConv(nn.Module):
    """Per-position, softmax-normalised, head-shared convolution kernels; a mixer."""

    def __init__(self, channels: int, kernel_size: int, heads: int, *, weight_dropout: float = 0.0) -> None:
        super().__init__()
        self.channels, self.kernel_size, self.heads = channels, kernel_size, heads
        self.weight_dropout = weight_dropout
        self.kernel_proj = nn.Linear(channels, heads * kernel_size, bias=False)

    def forward(self, x: Tensor, ctx: MixerContext) -> Tensor:
        """x: (batch, L, channels) -> (batch, L, channels)."""
        kernels = rearrange(self.kernel_proj(x), "b l (h k) -> b l h k", h=self.heads)
        kernels = F.dropout(torch.softmax(kernels, dim=-1), self.weight_dropout, self.training)
        window = conv_window(x, ctx, self, self.kernel_size)  # (b, L + k - 1, c)
        patches = window.unfold(1, self.kernel_size, 1)  # (b, L, c, k): patches[:, t, :, j] = window[:, t + j]
        patches = rearrange(patches, "b l (h c) k -> b l h c k", h=self.heads)
        out = torch.einsum("blhck,blhk->blhc", patches, kernels)
        return rearrange(out, "b l h c -> b l (h c)")
