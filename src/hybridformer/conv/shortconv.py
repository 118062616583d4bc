"""LFM2's double-gated short convolution (Liquid AI, 2025, "LFM2"; after Poli et al.'s Hyena gating).

``in_proj`` splits each position into gates B, C and a value x; the causal depthwise convolution
(kernel 3 in LFM2) mixes ``B ⊙ x`` over the last few positions, and C gates the result:
``out_proj(C ⊙ conv(B ⊙ x))``. Everything but the convolution is per position, so decoding keeps only
the last k − 1 values of ``B ⊙ x`` (a ``cache.ConvState``) — constant memory per token.
"""

from __future__ import annotations

from torch import Tensor, nn

from ..cache import project
from ..context import MixerContext
from .common import DepthwiseConv


class ShortConv(nn.Module):
    """``out_proj(C ⊙ DWConv(B ⊙ x))`` with ``[B; C; x] = in_proj(h)``; a mixer."""

    def __init__(self, d_model: int, kernel_size: int = 3, *, bias: bool = False) -> None:
        super().__init__()
        self.in_proj = nn.Linear(d_model, 3 * d_model, bias=bias)
        self.conv = DepthwiseConv(d_model, kernel_size, bias=bias)
        self.out_proj = nn.Linear(d_model, d_model, bias=bias)

    def forward(self, h: Tensor, ctx: MixerContext) -> Tensor:
        """h: (batch, L, d_model) -> (batch, L, d_model)."""
        b, c, x = project(self.in_proj, h, ctx.cache).chunk(3, dim=-1)
        return project(self.out_proj, c * self.conv(b * x, ctx), ctx.cache)
