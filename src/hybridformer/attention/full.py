"""Exact attention on PyTorch's fused scaled-dot-product kernels."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .base import AttentionKernel
from .bias import ScoreBias
from .masks import allowed_mask, drop_empty_padding


class FullAttention(AttentionKernel):
    """Exact softmax attention via ``F.scaled_dot_product_attention``.

    A score bias (ALiBi, T5) enters SDPA as an additive float mask, built one block of
    ``chunk_size`` queries at a time, so memory stays O(heads · chunk · L) instead of the
    O(heads · L²) of one dense bias (measured against FlexAttention in docs/RESULTS.md).
    """

    def __init__(self, *, dropout: float = 0.0, chunk_size: int = 512) -> None:
        super().__init__()
        self.dropout, self.chunk_size = dropout, chunk_size

    def forward(
        self, q: Tensor, k: Tensor, v: Tensor, *, causal: bool,
        key_padding_mask: Tensor | None = None, bias: ScoreBias | None = None,
    ) -> Tensor:
        key_padding_mask = drop_empty_padding(key_padding_mask)
        gqa = k.shape[1] != q.shape[1]
        dropout = self.dropout if self.training else 0.0
        q_len, k_len = q.shape[2], k.shape[2]
        if bias is None:
            if key_padding_mask is None and (not causal or q_len == 1 or q_len == k_len):
                return F.scaled_dot_product_attention(
                    q, k, v, is_causal=causal and q_len > 1, dropout_p=dropout, enable_gqa=gqa)
            mask = allowed_mask(q_len, k_len, causal=causal, key_padding_mask=key_padding_mask, device=q.device)
            return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout, enable_gqa=gqa)
        mask = allowed_mask(q_len, k_len, causal=causal, key_padding_mask=key_padding_mask, device=q.device)
        outputs = []
        for start in range(0, q_len, self.chunk_size):
            rows = slice(start, start + self.chunk_size)
            block = bias.dense(rows).to(q.dtype)[None]  # (1, heads, chunk, k_len)
            if mask is not None:
                rows_mask = mask if mask.shape[2] == 1 else mask[:, :, rows]
                block = block.masked_fill(~rows_mask, float("-inf"))
            outputs.append(F.scaled_dot_product_attention(
                q[:, :, rows], k, v, attn_mask=block, dropout_p=dropout, enable_gqa=gqa))
        return outputs[0] if len(outputs) == 1 else torch.cat(outputs, dim=2)
