"""Exact softmax attention in O(L · chunk) memory, forward and backward."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.checkpoint import checkpoint

from ..errors import ConfigError
from .base import AttentionKernel, expand_kv
from .bias import ScoreBias
from .masks import drop_empty_padding, position_mask


class ChunkedAttention(AttentionKernel):
    """Memory-efficient exact attention (Rabe & Staats, 2021; the online softmax of FlashAttention, Dao et al., 2022).

    Queries go chunk by chunk; each query chunk streams over key chunks keeping a running maximum,
    normaliser and weighted sum (online softmax), so no score block larger than chunk × chunk
    exists. Under autograd each query chunk is recomputed in the backward pass (activation
    checkpointing) instead of autograd keeping every block's scores, so training memory is
    O(L · chunk) too. A score bias (ALiBi, T5) is evaluated per block from positions, never as an
    L × L table, and its parameters still receive gradients. Causal key chunks past the diagonal
    are skipped (half the work).
    """

    def __init__(self, *, chunk_size: int = 256, dropout: float = 0.0) -> None:
        super().__init__()
        if chunk_size < 1:
            raise ConfigError(f"attention 'chunked': chunk_size must be >= 1, got {chunk_size}")
        self.chunk_size, self.dropout = chunk_size, dropout

    def forward(
        self, q: Tensor, k: Tensor, v: Tensor, *, causal: bool,
        key_padding_mask: Tensor | None = None, bias: ScoreBias | None = None,
    ) -> Tensor:
        heads, q_len, k_len = q.shape[1], q.shape[2], k.shape[2]
        k, v = expand_kv(k, heads), expand_kv(v, heads)
        padding = drop_empty_padding(key_padding_mask)
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
        """Online softmax of one query chunk (batch, heads, c, d) over all (allowed) key chunks."""
        batch, heads, c, _ = q.shape
        q_pos = torch.arange(rows.start, rows.stop, device=q.device) + offset  # absolute key coordinates
        k_end = min(k.shape[2], int(q_pos[-1]) + 1) if causal else k.shape[2]
        q = q * (1.0 / math.sqrt(q.shape[-1]))
        run_max = q.new_full((batch, heads, c), float("-inf"))
        run_sum = q.new_zeros(batch, heads, c)
        acc = q.new_zeros(batch, heads, c, v.shape[-1])
        dropout = self.dropout if self.training else 0.0
        for k_start in range(0, k_end, self.chunk_size):
            cols = slice(k_start, min(k_start + self.chunk_size, k_end))
            scores = q @ k[:, :, cols].transpose(-1, -2)  # (batch, heads, c, kc)
            if bias is not None:
                scores = scores + bias.dense(rows, cols).to(scores.dtype)
            needs_causal = causal and cols.stop - 1 > int(q_pos[0])
            if needs_causal or padding is not None:
                k_pos = torch.arange(cols.start, cols.stop, device=q.device)
                allowed = position_mask(q_pos[:, None], k_pos[None, :], causal=needs_causal,
                                        key_padding=None if padding is None else padding[:, None, None, cols])
                scores = scores.masked_fill(~allowed, float("-inf"))
            new_max = torch.maximum(run_max, scores.amax(-1))
            safe_max = new_max.masked_fill(new_max == float("-inf"), 0.0)  # rows with nothing allowed yet
            probs = torch.exp(scores - safe_max[..., None])
            correction = torch.exp(run_max - safe_max)
            run_sum = run_sum * correction + probs.sum(-1)
            if dropout:
                probs = F.dropout(probs, dropout)
            acc = acc * correction[..., None] + probs @ v[:, :, cols]
            run_max = new_max
        return acc / torch.where(run_sum > 0, run_sum, 1.0)[..., None]  # fully masked rows -> zeros
