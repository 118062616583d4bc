"""Dense, materialized softmax attention: the oracle every other mechanism is tested against."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .base import AttentionKernel, expand_kv
from .bias import ScoreBias
from .masks import allowed_mask


class ReferenceAttention(AttentionKernel):
    """softmax(q kᵀ / √d + bias, masked) v, with the full (batch, heads, q, k) score tensor."""

    is_exact = True

    def __init__(self, *, dropout: float = 0.0) -> None:
        super().__init__()
        self.dropout = dropout

    def forward(
        self, q: Tensor, k: Tensor, v: Tensor, *, causal: bool,
        key_padding_mask: Tensor | None = None, bias: ScoreBias | None = None,
    ) -> Tensor:
        heads = q.shape[1]
        k, v = expand_kv(k, heads), expand_kv(v, heads)
        scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
        if bias is not None:
            scores = scores + bias.dense()
        mask = allowed_mask(q.shape[2], k.shape[2], causal=causal, key_padding_mask=key_padding_mask,
                            device=q.device)
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        probs = torch.softmax(scores, dim=-1).nan_to_num(0.0)  # fully masked rows give zeros
        probs = torch.nn.functional.dropout(probs, self.dropout, self.training)
        return probs @ v
