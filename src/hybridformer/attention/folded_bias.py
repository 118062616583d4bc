"""Causal attention with a linear-distance bias (ALiBi) folded into q·k: no bias tensor at all.

Under a causal mask ALiBi's bias is ``-m_h (i - j) = m_h (j - c) - m_h (i - c)`` for any reference
``c`` (Press et al., 2022). The second term is constant along a query's row, and softmax ignores
constants, so the bias is one extra feature: ``q' = [q, m_h √D]``, ``k' = [k, j - c]`` with SDPA's
scale pinned at ``1/√D`` gives exactly ``q·k/√D + m_h (j - c)``. The kernel then needs no bias and
no float mask: each query chunk is split into its keys before the chunk (no mask at all) and the
diagonal block (SDPA's own ``is_causal``, which skips the masked half), and the two partial softmaxes
are merged through their log-sum-exps, as FlashAttention merges key blocks (Dao et al., 2022).

Precision: fp32 rounds a score to about ``eps · |score|``. With ``c`` the middle of the query chunk,
the scores that carry weight stay within ``m_h · (chunk/2 + a few / m_h)`` of zero, so the error stays
near fp32's usual level for chunks of a few hundred queries; the reference point moves with each
chunk, which is why the key feature is rewritten per chunk rather than fixed once for the sequence.

Backward reuses the fused kernel's own backward on each part with the *merged* output and
log-sum-exp, which yields each part's exact share of the gradient; only q, k, v, the output and the
log-sum-exp are kept (O(L·D) memory, no recomputation of the forward). The fused kernel with a
log-sum-exp output is PyTorch's CPU flash kernel, so this path serves CPU tensors.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

_flash = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
_flash_backward = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward


def folded_bias_attention(q: Tensor, k: Tensor, v: Tensor, slopes: Tensor, k_pos: Tensor, *, chunk_size: int) -> Tensor:
    """softmax(q·kᵀ/√D + slopes_h · (k_pos_j - k_pos_i)) v over the causal (bottom-right) keys.

    q (batch, heads, q_len, D); k, v (batch, heads, k_len, D) — GQA already expanded; ``slopes``
    (heads,); ``k_pos`` (k_len,) the key positions, the queries being the last ``q_len`` keys.
    """
    return _FoldedBias.apply(q, k, v, slopes, k_pos, chunk_size)


def _extra_dims(dim: int) -> int:
    """The feature column plus zero padding to a multiple of 8 (the CPU kernel's vector loops run ~5% faster)."""
    return -(-(dim + 1) // 8) * 8 - dim


def _extended(q: Tensor, k: Tensor, v: Tensor, slopes: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """q' = [q, m_h √D, 0...], k' = [k, feature, 0...] (feature set per chunk), v' = [v, 0...] (one head size)."""
    batch, heads, q_len, dim = q.shape
    extra = _extra_dims(dim)
    slope_col = (slopes.to(q.dtype) * math.sqrt(dim)).view(1, heads, 1, 1).expand(batch, heads, q_len, 1)
    return F.pad(torch.cat([q, slope_col], -1), (0, extra - 1)), F.pad(k, (0, extra)), F.pad(v, (0, extra))


def _chunks(q_len: int, k_len: int, chunk_size: int):
    """(query rows, first key of the diagonal block) per chunk; query i is key ``k_len - q_len + i``."""
    offset = k_len - q_len
    for start in range(0, q_len, chunk_size):
        rows = slice(start, min(start + chunk_size, q_len))
        yield rows, offset + rows.start


def _set_key_feature(k_ext: Tensor, k_pos: Tensor, diag: slice, dim: int) -> None:
    """Key feature ``k_pos - c`` for the keys up to this chunk's end, ``c`` the chunk's middle query."""
    centre = k_pos[(diag.start + diag.stop - 1) // 2]
    k_ext[:, :, : diag.stop, dim] = (k_pos[: diag.stop] - centre).to(k_ext.dtype)


class _FoldedBias(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q: Tensor, k: Tensor, v: Tensor, slopes: Tensor, k_pos: Tensor, chunk_size: int) -> Tensor:
        q_ext, k_ext, v_ext = _extended(q, k, v, slopes)
        scale = 1 / math.sqrt(q.shape[-1])
        out = torch.empty_like(q_ext)
        lse = q.new_empty(q.shape[:3])
        for rows, first in _chunks(q.shape[2], k.shape[2], chunk_size):
            diag = slice(first, first + rows.stop - rows.start)
            _set_key_feature(k_ext, k_pos, diag, q.shape[-1])
            q_rows = q_ext[:, :, rows]
            o_diag, lse_diag = _flash(q_rows, k_ext[:, :, diag], v_ext[:, :, diag], 0.0, True, scale=scale)
            if first == 0:
                out[:, :, rows], lse[:, :, rows] = o_diag, lse_diag
                continue
            o_prev, lse_prev = _flash(q_rows, k_ext[:, :, :first], v_ext[:, :, :first], 0.0, False, scale=scale)
            lse_rows = torch.logaddexp(lse_diag, lse_prev)
            out[:, :, rows] = (o_diag * (lse_diag - lse_rows).exp().unsqueeze(-1)
                               + o_prev * (lse_prev - lse_rows).exp().unsqueeze(-1))
            lse[:, :, rows] = lse_rows
        ctx.save_for_backward(q, k, v, slopes, k_pos, out, lse)
        ctx.chunk_size = chunk_size
        return out[..., : q.shape[-1]]

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        q, k, v, slopes, k_pos, out, lse = ctx.saved_tensors
        q_ext, k_ext, v_ext = _extended(q, k, v, slopes)
        scale = 1 / math.sqrt(q.shape[-1])
        dim = q.shape[-1]
        grad_out = F.pad(grad_out, (0, _extra_dims(dim)))  # the padded output columns are constant 0
        dq, dk, dv = torch.empty_like(q_ext), torch.zeros_like(k_ext), torch.zeros_like(v_ext)
        for rows, first in _chunks(q.shape[2], k.shape[2], ctx.chunk_size):
            diag = slice(first, first + rows.stop - rows.start)
            _set_key_feature(k_ext, k_pos, diag, q.shape[-1])
            part = (grad_out[:, :, rows], q_ext[:, :, rows])
            merged = (out[:, :, rows], lse[:, :, rows].contiguous())
            dq_rows, dk_diag, dv_diag = _flash_backward(*part, k_ext[:, :, diag], v_ext[:, :, diag], *merged, 0.0,
                                                        True, scale=scale)
            dk[:, :, diag] += dk_diag
            dv[:, :, diag] += dv_diag
            if first > 0:
                dq_prev, dk_prev, dv_prev = _flash_backward(*part, k_ext[:, :, :first], v_ext[:, :, :first],
                                                            *merged, 0.0, False, scale=scale)
                dq_rows += dq_prev
                dk[:, :, :first] += dk_prev
                dv[:, :, :first] += dv_prev
            dq[:, :, rows] = dq_rows
        return dq[..., :dim], dk[..., :dim], dv[..., :dim], None, None, None
