"""Exact attention on PyTorch's fused scaled-dot-product kernels."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from .base import AttentionKernel
from .bias import ScoreBias
from .chunked import ChunkedAttention
from .masks import allowed_mask, drop_empty_padding


class FullAttention(AttentionKernel):
    """Exact softmax attention via ``F.scaled_dot_product_attention``.

    A score bias (ALiBi, T5) cannot enter SDPA's flash kernel except as an additive mask, and one
    dense (heads, L, L) mask is the memory wall this toolkit exists to avoid. So a biased call goes
    through the ``chunked`` mechanism: causal ALiBi folded into q·k (no bias tensor at all), any
    other bias query chunk by query chunk (each chunk's bias exists only while that chunk is
    computed, and is recomputed in backward), keeping memory O(heads · chunk · L) forward and backward.
    FlexAttention was measured as the alternative on CPU: faster forward, but no CPU
    backward in torch 2.13 and a recompile per decoding shape (docs/RESULTS.md).
    """

    is_exact = True

    def __init__(self, *, dropout: float = 0.0, chunk_size: int = 512) -> None:
        super().__init__()
        self.dropout = dropout
        self.biased = ChunkedAttention(chunk_size=chunk_size, dropout=dropout)

    def forward(
        self, q: Tensor, k: Tensor, v: Tensor, *, causal: bool,
        key_padding_mask: Tensor | None = None, bias: ScoreBias | None = None,
    ) -> Tensor:
        if bias is not None:
            return self.biased(q, k, v, causal=causal, key_padding_mask=key_padding_mask, bias=bias)
        key_padding_mask = drop_empty_padding(key_padding_mask)
        gqa = k.shape[1] != q.shape[1]
        dropout = self.dropout if self.training else 0.0
        q_len, k_len = q.shape[2], k.shape[2]
        if key_padding_mask is None and (not causal or q_len == 1 or q_len == k_len):
            return F.scaled_dot_product_attention(
                q, k, v, is_causal=causal and q_len > 1, dropout_p=dropout, enable_gqa=gqa)
        mask = allowed_mask(q_len, k_len, causal=causal, key_padding_mask=key_padding_mask, device=q.device)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout, enable_gqa=gqa)
