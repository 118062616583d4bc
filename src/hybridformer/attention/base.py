"""The attention-kernel protocol every mechanism implements."""

from __future__ import annotations

import inspect

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..cache import KVCache
from ..errors import ConfigError
from .bias import ScoreBias


class AttentionKernel(nn.Module):
    """``forward(q, k, v, *, causal, key_padding_mask=None, bias=None) -> out``.

    q: (batch, heads, q_len, head_dim); k, v: (batch, kv_heads, kv_len, head_dim);
    key_padding_mask: (batch, kv_len), True = padding; returns (batch, heads, q_len, head_dim).
    Options are keyword-only ``__init__`` parameters. A kernel also owns its decoding memory:
    the default is a growing KV cache over which the query attends exactly.

    ``left_padding``: False for a kernel whose step cannot take ``start`` (batch,), the first real key column of
    each row of left-padded prompts: one that places keys by column, not by relative position (global sinks,
    BigBird's blocks). The torch engine then batches only prompts of one length for it.

    ``rotates_sinks``: True for a kernel that scores some keys from positions of its own (StreamingLLM's
    cache positions, ``sliding_window:sink_positions=cache``); such a kernel's ``forward`` and ``step``
    also take the call's RoPE rotation as ``rope=`` (RoPE is otherwise applied before every kernel).

    ``is_exact``: True for a kernel computing softmax attention over every unmasked key, as the dense
    reference does: another engine (CTranslate2) running plain attention then computes the same.

    ``bounded_state``: True for a kernel whose decoding state keeps one size however long the text (a window's
    ring, a linear-attention state): a long text can then be scored through the cache in chunks at flat memory.

    ``product_dtype``: None, or the dtype (bf16) in which a kernel with a products path of its own computes the
    scores and the weighted sum as batched GEMMs in inference (the sliding window's bands). The bf16 weight format
    sets it on every kernel; the others ignore it.
    """

    rotates_sinks = False
    product_dtype: torch.dtype | None = None
    is_exact = False
    bounded_state = False
    left_padding = True  # step() takes start=: rows of left-padded prompts decode as if each were alone

    @classmethod
    def check(cls, *, causal: bool, position: str, where: str) -> None:
        """Raise ConfigError if this mechanism cannot serve a (causal?) stack with these positions."""

    def bind(self, heads: int, head_dim: int) -> None:
        """Called by the mixer that owns the kernel: a kernel with learned per-head parameters makes them here."""

    def keep_heads(self, kept: list[int]) -> None:
        """Called when head pruning keeps only the query heads ``kept``: narrow the per-head parameters."""

    def forward(
        self, q: Tensor, k: Tensor, v: Tensor, *, causal: bool,
        key_padding_mask: Tensor | None = None, bias: ScoreBias | None = None,
    ) -> Tensor:
        raise NotImplementedError

    def new_state(self) -> KVCache:
        return KVCache()

    def step(self, q: Tensor, k: Tensor, v: Tensor, state: KVCache, *, bias: ScoreBias | None = None,
             start: Tensor | None = None) -> Tensor:
        """Append the new keys/values, then attend causally over everything cached (but each row's left padding,
        the columns before ``start``). A one-token step attends each row's own keys in a call of their own, shaped
        as the row alone: a masked call over the padded columns, or even several rows in one call, sums in another
        order, so a row's result would depend on its batch (bf16 products amplify that into other answers). It
        measured no slower at 16 rows (SmolLM2-135M)."""
        keys, values = state.append(k, v)
        if bias is not None:
            bias = bias.with_keys(state.positions(q.device))
        if start is not None and q.shape[2] == 1 and bias is None and not torch.compiler.is_compiling():
            return torch.cat([self(q[row : row + 1], keys[row : row + 1, :, first:], values[row : row + 1, :, first:],
                                   causal=True) for row, first in enumerate(start.tolist())])
        padding = None if start is None else state.positions(q.device)[None] < start[:, None]
        return self(q, keys, values, causal=True, bias=bias, key_padding_mask=padding)


def expand_kv(k: Tensor, heads: int) -> Tensor:
    """Repeat grouped key/value heads (GQA/MQA) so each query head has its own."""
    groups = heads // k.shape[1]
    return k if groups == 1 else k.repeat_interleave(groups, dim=1)


def kernel_options(kernel_cls: type) -> list[str]:
    """The options a kernel takes: its keyword-only ``__init__`` parameters."""
    params = inspect.signature(kernel_cls.__init__).parameters.values()
    return [p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY]


def attend(q: Tensor, k: Tensor, v: Tensor, *, allowed: Tensor | None = None, bias: Tensor | None = None,
           dropout: float = 0.0) -> Tensor:
    """Dense softmax attention over one block on SDPA's fused CPU/GPU kernels.

    q (..., heads, q, d), k/v (..., kv_heads, k, d); ``allowed`` bool and ``bias`` float broadcast to
    (..., heads, q, k). Rows with no allowed key come back as zeros (as in ``reference``).
    """
    mask = allowed
    if bias is not None:
        bias = bias.to(q.dtype)
        mask = bias if allowed is None else bias.masked_fill(~allowed, float("-inf"))
    gqa = q.dim() == 4 and k.shape[1] != q.shape[1]
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout, enable_gqa=gqa)


def attend_lse(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Softmax attention and the log-sum-exp of each query's scores (batch, heads, q): two attentions over
    disjoint key sets then combine exactly (:func:`merge_attention`). Inference only (the log-sum-exp carries
    no gradient). ``mask`` is additive, of q's dtype. On CPU it is SDPA's fused flash kernel (keys may be
    overlapping strided views, GQA heads are shared); elsewhere :func:`dense_attend_lse`."""
    if q.device.type == "cpu":
        return torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(q, k, v, 0.0, False, attn_mask=mask)
    return dense_attend_lse(q, k, v, mask)


def dense_attend_lse(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """:func:`attend_lse` with the scores materialized (devices without a fused kernel that returns them)."""
    k, v = expand_kv(k, q.shape[1]), expand_kv(v, q.shape[1])
    scores = (q @ k.transpose(-1, -2)).to(torch.promote_types(q.dtype, torch.float32)) * q.shape[-1] ** -0.5
    if mask is not None:
        scores = scores + mask
    lse = scores.logsumexp(-1)
    return (scores - lse[..., None]).exp().to(v.dtype) @ v, lse


def merge_attention(out: Tensor, lse: Tensor, other: Tensor, other_lse: Tensor) -> Tensor:
    """Attention over the union of two disjoint key sets from each one's output and log-sum-exp: each part is
    weighted by its share of the softmax mass (the flash-attention rescaling, Dao et al., 2022)."""
    total = torch.logaddexp(lse, other_lse)
    return out * (lse - total).exp()[..., None].to(out.dtype) + other * (other_lse - total).exp()[..., None].to(
        out.dtype)


SCORE_BIAS_ALTERNATIVES = ("use position=rope/sinusoidal/learned, or attention full, chunked, sliding_window "
                           "or block_sparse")


def no_score_bias(name: str, position: str, where: str) -> None:
    """Kernelized and low-rank attention never form q·k scores, so an additive score bias has no place."""
    if position in ("alibi", "t5"):
        raise ConfigError(
            f"{where}: attention.name={name!r} cannot use position={position!r} (an additive score bias needs "
            f"explicit scores); {SCORE_BIAS_ALTERNATIVES}")


def refuse_score_bias(name: str, bias: ScoreBias | None) -> None:
    """At call time: a kernel that never forms q·k scores refuses a bias rather than ignore it."""
    if bias is not None:
        raise ConfigError(f"attention {name!r} cannot apply a score bias (ALiBi/T5 need explicit q·k scores); "
                          f"{SCORE_BIAS_ALTERNATIVES}")
