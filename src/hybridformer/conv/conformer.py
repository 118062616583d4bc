"""The Conformer convolution module (Gulati et al., 2020).

pointwise (d → 2d) → GLU → depthwise conv (kernel k) → norm → Swish → pointwise (d → d).
The paper normalises with BatchNorm; its batch statistics span padding and (in a decoder)
future positions, so here the norm is per position (LayerNorm/RMSNorm over channels), which
is padding-safe, causal and identical in training and in step-by-step decoding.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from ..context import MixerContext
from ..norm import build_norm
from .common import DepthwiseConv


class ConformerConvModule(nn.Module):
    """Local mixing for the Conformer layer; a mixer (``forward(x, ctx)``)."""

    def __init__(self, d_model: int, kernel_size: int, *, norm: str = "layernorm", dropout: float = 0.0) -> None:
        super().__init__()
        self.pointwise_in = nn.Linear(d_model, 2 * d_model)
        self.depthwise = DepthwiseConv(d_model, kernel_size)
        self.norm = build_norm(norm, d_model)
        self.pointwise_out = nn.Linear(d_model, d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, ctx: MixerContext) -> Tensor:
        """x: (batch, L, d_model) -> (batch, L, d_model)."""
        h = F.glu(self.pointwise_in(x), dim=-1)
        h = F.silu(self.norm(self.depthwise(h, ctx)))
        return self.pointwise_out(self.dropout(h))
