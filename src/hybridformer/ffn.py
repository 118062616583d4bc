"""Position-wise feed-forward networks, plain or gated (Shazeer, 2020: GLU variants)."""

from __future__ import annotations

from functools import partial

import torch.nn.functional as F
from torch import Tensor, nn

from .cache import project
from .context import MixerContext

_gelu_tanh = partial(F.gelu, approximate="tanh")  # GPT-2's and T5 v1.1's "gelu_new"
ACTIVATIONS = {"relu": F.relu, "gelu": F.gelu, "gelu_tanh": _gelu_tanh, "silu": F.silu,
               "swiglu": F.silu, "geglu": F.gelu, "geglu_tanh": _gelu_tanh}
GATED = {"swiglu", "geglu", "geglu_tanh"}


class FeedForward(nn.Module):
    """``W2 · act(W1 x)``, or ``W2 · (act(W1 x) ⊙ V x)`` for the gated variants (one fused input matmul)."""

    def __init__(self, d_model: int, hidden: int, activation: str = "relu", dropout: float = 0.0, *,
                 bias: bool = True) -> None:
        super().__init__()
        self.gated = activation in GATED
        self.act = ACTIVATIONS[activation]
        self.linear1 = nn.Linear(d_model, hidden * (2 if self.gated else 1), bias=bias)
        self.linear2 = nn.Linear(hidden, d_model, bias=bias)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, ctx: MixerContext | None = None) -> Tensor:
        cache = None if ctx is None else ctx.cache
        h = project(self.linear1, x, cache)
        if self.gated:
            h, gate = h.chunk(2, dim=-1)
            h = self.act(h) * gate
        else:
            h = self.act(h)
        return project(self.linear2, self.dropout(h), cache)
