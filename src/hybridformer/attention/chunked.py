"""Exact softmax attention in O(L · chunk) memory, forward and backward."""

from __future__ import annotations

import torch
from torch import Tensor
from torch.utils.checkpoint import checkpoint

from ..errors import ConfigError
from .base import AttentionKernel, attend, expand_kv
from .bias import ScoreBias
from .folded_bias import folded_bias_attention
from .masks import drop_empty_padding, position_mask


class ChunkedAttention(AttentionKernel):
    """Memory-efficient exact attention (Rabe & Staats, 2021; FlashAttention, Dao et al., 2022).

    Queries go ``chunk_size`` at a time; each chunk attends its keys through SDPA's fused kernel,
    whose online softmax streams over key blocks with a running maximum and normaliser. The score
    bias (ALiBi, T5) and mask exist only for one chunk (chunk × L), never as an L × L table, and a
    causal chunk stops at its last query. Under autograd each query chunk is recomputed in the
    backward pass (activation checkpointing) instead of autograd keeping every chunk's bias and
    mask, so training memory is O(L · chunk) too, and bias parameters (T5) still get gradients.
    (An explicit Python online softmax over key chunks was measured 10-20x slower on CPU: its
    ~20 elementwise passes per score cannot compete with one fused pass.)

    ALiBi (``ScoreBias.distance_slopes``), causal or not, needs no bias tensor at all: it is folded
    into q·k as one extra dimension (``folded_bias``), on CPU, without padding or active dropout, at
    close to SDPA's unbiased speed; larger chunks are faster there and its fp32 rounding error grows
    with slope × chunk (docs/attention.md). The fold copies k and v once per call, so it serves calls
    of at least ``fold_min_queries`` queries (training, prefill); a decoding step of a few queries
    keeps the dense per-chunk bias, which was measured 8x faster there (1 query over 1-4k keys; the
    two break even at 32-64 queries).
    """

    is_exact = True

    fold_min_queries = 64

    def __init__(self, *, chunk_size: int = 256, dropout: float = 0.0) -> None:
        super().__init__()
        if chunk_size < 1:
            raise ConfigError(f"attention 'chunked': chunk_size must be >= 1, got {chunk_size}")
        self.chunk_size, self.dropout = chunk_size, dropout

    def forward(
        self, q: Tensor, k: Tensor, v: Tensor, *, causal: bool,
        key_padding_mask: Tensor | None = None, bias: ScoreBias | None = None,
    ) -> Tensor:
        q_len, k_len = q.shape[2], k.shape[2]
        padding = drop_empty_padding(key_padding_mask)
        slopes = None if bias is None else bias.distance_slopes()
        if (slopes is not None and padding is None and q.device.type == "cpu" and q_len >= self.fold_min_queries
                and not (self.training and self.dropout)):
            heads = q.shape[1]
            return folded_bias_attention(q, expand_kv(k, heads), expand_kv(v, heads), slopes.to(q.device),
                                         bias.k_pos.to(q.device), causal=causal, chunk_size=self.chunk_size)
        recompute = torch.is_grad_enabled() and any(t.requires_grad for t in (q, k, v))
        outputs = []
        for start in range(0, q_len, self.chunk_size):
            rows = slice(start, min(start + self.chunk_size, q_len))

            def chunk(q_rows: Tensor, keys: Tensor, values: Tensor, rows: slice = rows) -> Tensor:
                return self._query_chunk(q_rows, keys, values, rows, k_len - q_len, causal, padding, bias)

            q_rows = q[:, :, rows]
            outputs.append(checkpoint(chunk, q_rows, k, v, use_reentrant=False) if recompute
                           else chunk(q_rows, k, v))
        return outputs[0] if len(outputs) == 1 else torch.cat(outputs, dim=2)

    def _query_chunk(
        self, q: Tensor, k: Tensor, v: Tensor, rows: slice, offset: int, causal: bool,
        padding: Tensor | None, bias: ScoreBias | None,
    ) -> Tensor:
        """One query chunk (batch, heads, c, d) over the keys it may see (causal: up to its last query)."""
        q_pos = torch.arange(rows.start, rows.stop, device=q.device) + offset  # absolute key coordinates
        k_end = min(k.shape[2], int(q_pos[-1]) + 1) if causal else k.shape[2]
        cols = slice(0, k_end)
        allowed = None
        if (causal and k_end > int(q_pos[0]) + 1) or padding is not None:
            k_pos = torch.arange(k_end, device=q.device)
            allowed = position_mask(q_pos[:, None], k_pos[None, :], causal=causal,
                                    key_padding=None if padding is None else padding[:, None, None, cols])
        score_bias = None if bias is None else bias.dense(rows, cols)
        dropout = self.dropout if self.training else 0.0
        return attend(q, k[:, :, cols], v[:, :, cols], allowed=allowed, bias=score_bias, dropout=dropout)
