"""ALiBi folded into q·k as one extra dimension: attention with no bias tensor at all.

For keys before a query ALiBi's bias is ``-m_h (i - j) = m_h (j - c) - m_h (i - c)`` for any reference
``c`` (Press et al., 2022); for keys after it, ``-m_h (j - i) = -m_h (j - c) + m_h (i - c)``. The
``(i - c)`` terms are constant along a query's row and softmax ignores constants, so on each side the
bias is one extra feature: ``q' = [q, m_h √D]``, ``k' = [k, ±(j - c)]`` with SDPA's scale pinned at
``1/√D`` gives exactly ``q·k/√D ± m_h (j - c)``. Each query chunk is split into its keys before the
chunk (no mask at all), its keys after the chunk (non-causal only, the mirrored feature) and the
diagonal block — causal: SDPA's own ``is_causal`` on the folded feature, which skips the masked half;
non-causal: a (heads, chunk, chunk) dense bias. The partial softmaxes are merged through their
log-sum-exps, each corrected by its row constant, as FlashAttention merges key blocks (Dao et al.,
2022).

Precision: fp32 rounds a score to about ``eps · |score|``. With ``c`` the middle of the query chunk,
the scores that carry weight stay within ``m_h · (chunk/2 + a few / m_h)`` of zero, so the error stays
near fp32's usual level for chunks of a few hundred queries; ``c`` moves with each chunk, which is
why the key feature is rewritten per chunk rather than fixed once for the sequence.

Backward reuses the fused kernel's own backward on each part with the *merged* output and
log-sum-exp (in that part's frame), which yields each part's exact share of the gradient; only q, k,
v, the output and the log-sum-exp are kept (O(L·D) memory, no recomputation of the forward). The
fused kernel that returns a log-sum-exp is PyTorch's CPU flash kernel, so this path serves CPU tensors.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

_flash = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
_flash_backward = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward


def folded_bias_attention(q: Tensor, k: Tensor, v: Tensor, slopes: Tensor, k_pos: Tensor, *, causal: bool,
                          chunk_size: int) -> Tensor:
    """softmax(q·kᵀ/√D - slopes_h · |k_pos_j - k_pos_i|) v, causal (bottom-right) or not.

    q (batch, heads, q_len, D); k, v (batch, heads, k_len, D) — GQA already expanded; ``slopes``
    (heads,); ``k_pos`` (k_len,) nondecreasing key positions, the queries being the last ``q_len`` keys.
    """
    return _FoldedBias.apply(q, k, v, slopes, k_pos, causal, chunk_size)


@dataclass
class _Part:
    """One key range of a query chunk and what its folded scores lack."""

    keys: slice
    row_const: Tensor | None  # (1, heads, rows): true score = folded score + row_const (None: 0)
    is_causal: bool = False
    bias: Tensor | None = None  # (1, heads, rows, keys): a dense bias (the non-causal diagonal block)


def _extra_dims(dim: int) -> int:
    """The feature column plus zero padding to a multiple of 8 (the CPU kernel's vector loops run ~5% faster)."""
    return -(-(dim + 1) // 8) * 8 - dim


def _extended(q: Tensor, k: Tensor, v: Tensor, slopes: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """q' = [q, m_h √D, 0...], k' = [k, feature, 0...] (feature set per chunk), v' = [v, 0...] (one head size)."""
    batch, heads, q_len, dim = q.shape
    extra = _extra_dims(dim)
    slope_col = (slopes.to(q.dtype) * math.sqrt(dim)).view(1, heads, 1, 1).expand(batch, heads, q_len, 1)
    return F.pad(torch.cat([q, slope_col], -1), (0, extra - 1)), F.pad(k, (0, extra)), F.pad(v, (0, extra))


def _chunks(k_ext: Tensor, dim: int, k_pos: Tensor, slopes: Tensor, causal: bool, q_len: int,
            chunk_size: int) -> Iterator[tuple[slice, list[_Part]]]:
    """Per query chunk: its rows and key parts, after writing the chunk's key feature into ``k_ext``.

    The feature is ``-|j - c|`` off the diagonal block (``+ (j - c)`` before the chunk, mirrored after
    it); on the causal diagonal block ``j - c``; on the non-causal one 0, its bias being dense.
    """
    k_len = k_pos.shape[0]
    pos = k_pos.to(k_ext.dtype)
    feature = k_ext[..., dim]  # (batch, heads, k_len) view
    for start in range(0, q_len, chunk_size):
        rows = slice(start, min(start + chunk_size, q_len))
        diag = slice(k_len - q_len + rows.start, k_len - q_len + rows.stop)  # the chunk's own keys
        centre = pos[(diag.start + diag.stop - 1) // 2]
        rel = slopes.view(1, -1, 1) * (pos[diag] - centre)  # m_h (i - c): (1, heads, rows)
        feature.copy_(-(pos - centre).abs())
        parts = [_Part(slice(0, diag.start), -rel)] if diag.start > 0 else []
        if causal:
            feature[:, :, diag] = pos[diag] - centre
            parts.append(_Part(diag, -rel, is_causal=True))
        else:
            feature[:, :, diag] = 0
            distance = (pos[diag, None] - pos[None, diag]).abs()
            parts.append(_Part(diag, None, bias=-slopes.view(1, -1, 1, 1) * distance))
            if diag.stop < k_len:
                parts.append(_Part(slice(diag.stop, k_len), rel))
        yield rows, parts


def _frame(lse: Tensor, part: _Part) -> Tensor:
    """A true log-sum-exp in the frame of the part's folded scores."""
    return lse if part.row_const is None else lse - part.row_const


class _FoldedBias(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q: Tensor, k: Tensor, v: Tensor, slopes: Tensor, k_pos: Tensor, causal: bool,
                chunk_size: int) -> Tensor:
        dim, slopes = q.shape[-1], slopes.to(q.dtype)
        q_ext, k_ext, v_ext = _extended(q, k, v, slopes)
        scale = 1 / math.sqrt(dim)
        out, lse = torch.empty_like(q_ext), q.new_empty(q.shape[:3])
        for rows, parts in _chunks(k_ext, dim, k_pos, slopes, causal, q.shape[2], chunk_size):
            outs, lses = [], []
            for part in parts:
                o, part_lse = _flash(q_ext[:, :, rows], k_ext[:, :, part.keys], v_ext[:, :, part.keys], 0.0,
                                     part.is_causal, attn_mask=part.bias, scale=scale)
                outs.append(o)
                lses.append(part_lse if part.row_const is None else part_lse + part.row_const)
            lse_rows = torch.stack(lses).logsumexp(0)
            out[:, :, rows] = sum(o * (part_lse - lse_rows).exp().unsqueeze(-1)
                                  for o, part_lse in zip(outs, lses, strict=True))
            lse[:, :, rows] = lse_rows
        ctx.save_for_backward(q, k, v, slopes, k_pos, out, lse)
        ctx.causal, ctx.chunk_size = causal, chunk_size
        return out[..., :dim]

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        q, k, v, slopes, k_pos, out, lse = ctx.saved_tensors
        dim = q.shape[-1]
        q_ext, k_ext, v_ext = _extended(q, k, v, slopes)
        scale = 1 / math.sqrt(dim)
        grad_out = F.pad(grad_out, (0, _extra_dims(dim)))  # the padded output columns are constant 0
        dq, dk, dv = torch.empty_like(q_ext), torch.zeros_like(k_ext), torch.zeros_like(v_ext)
        for rows, parts in _chunks(k_ext, dim, k_pos, slopes, ctx.causal, q.shape[2], ctx.chunk_size):
            dq_rows = None
            for part in parts:
                dq_part, dk_part, dv_part = _flash_backward(
                    grad_out[:, :, rows], q_ext[:, :, rows], k_ext[:, :, part.keys], v_ext[:, :, part.keys],
                    out[:, :, rows], _frame(lse[:, :, rows], part).contiguous(), 0.0, part.is_causal,
                    attn_mask=part.bias, scale=scale)
                dq_rows = dq_part if dq_rows is None else dq_rows + dq_part
                dk[:, :, part.keys] += dk_part
                dv[:, :, part.keys] += dv_part
            dq[:, :, rows] = dq_rows
        return dq[..., :dim], dk[..., :dim], dv[..., :dim], None, None, None, None
