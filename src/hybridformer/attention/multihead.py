"""Multi-head attention as a mixer: projections, GQA/MQA head sharing, RoPE, cache; the kernel does the rest."""

from __future__ import annotations

from torch import Tensor, nn

from ..cache import StaticKV, project
from ..context import MixerContext
from .base import AttentionKernel
from .masks import drop_empty_padding


class _Attention(nn.Module):
    """What self- and cross-attention share: head bookkeeping, the kernel and the output projection."""

    def __init__(self, d_model: int, heads: int, kv_heads: int, kernel: AttentionKernel, *, bias: bool = True,
                 head_dim: int | None = None):
        super().__init__()
        self.heads, self.kv_heads, self.head_dim = heads, kv_heads, head_dim or d_model // heads
        self.kernel = kernel
        kernel.bind(heads, self.head_dim)
        self.out_proj = nn.Linear(heads * self.head_dim, d_model, bias=bias)
        self.q_scale: float | None = None  # see set_score_scale

    def set_score_scale(self, score_scale: float | None) -> _Attention:
        """Scale scores by ``score_scale`` instead of the kernels' 1/√head_dim (T5: 1), through q."""
        self.q_scale = None if score_scale is None else score_scale * self.head_dim**0.5
        return self

    def scale_queries(self, q: Tensor) -> Tensor:
        return q if self.q_scale is None else q * self.q_scale

    def split_heads(self, x: Tensor, heads: int) -> Tensor:
        """(batch, L, heads·head_dim) -> (batch, heads, L, head_dim), a view (this runs every decoding step)."""
        return x.unflatten(-1, (heads, self.head_dim)).transpose(1, 2)

    def merge_heads(self, x: Tensor, ctx: MixerContext | None = None) -> Tensor:
        """(batch, heads, L, head_dim) -> output projection of (batch, L, heads·head_dim)."""
        return project(self.out_proj, x.transpose(1, 2).flatten(2), None if ctx is None else ctx.cache)


class MultiHeadAttention(_Attention):
    """Self-attention: one fused QKV projection, ``kv_heads`` ≤ ``heads`` key/value heads (GQA/MQA).

    Positions come from the mixer context: rotary angles are applied to q and k, a relative
    score bias (ALiBi/T5) is handed to the kernel. In incremental decoding the kernel's own
    state (``ctx.cache[self]``) holds the past. ``qk_norm`` (two norms over head_dim) normalises each
    head's queries and keys before RoPE (QK-norm: Dehghani et al., 2023; Qwen3, Gemma 3).
    """

    def __init__(self, d_model: int, heads: int, kv_heads: int, kernel: AttentionKernel, *, bias: bool = True,
                 qkv_bias: bool | None = None, head_dim: int | None = None,
                 qk_norm: list[nn.Module] | None = None):
        super().__init__(d_model, heads, kv_heads, kernel, bias=bias, head_dim=head_dim)
        qkv_bias = bias if qkv_bias is None else qkv_bias
        self.qkv_proj = nn.Linear(d_model, (heads + 2 * kv_heads) * self.head_dim, bias=qkv_bias)
        self.q_norm, self.k_norm = qk_norm or (None, None)

    def forward(self, x: Tensor, ctx: MixerContext) -> Tensor:
        q_dim, kv_dim = self.heads * self.head_dim, self.kv_heads * self.head_dim
        q, k, v = project(self.qkv_proj, x, ctx.cache).split([q_dim, kv_dim, kv_dim], dim=-1)
        q, k = self.split_heads(q, self.heads), self.split_heads(k, self.kv_heads)
        v = self.split_heads(v, self.kv_heads)
        if self.q_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        q = self.scale_queries(q)
        if ctx.rope is not None:
            q, k = ctx.rope.rotate(q), ctx.rope.rotate(k)
        # StreamingLLM sink positions: such a kernel re-rotates the queries, so it also takes the rotation
        extra = {"rope": ctx.rope} if self.kernel.rotates_sinks else {}
        if ctx.cache is None:
            out = self.kernel(q, k, v, causal=ctx.causal, key_padding_mask=ctx.padding_mask, bias=ctx.score_bias,
                              **extra)
        else:
            state = ctx.cache.get(self)
            if state is None:
                state = ctx.cache[self] = self.kernel.new_state()
            if ctx.cache.start is not None:  # left-padded prompts: the keys before each row's start are padding
                extra["start"] = ctx.cache.start
            out = self.kernel.step(q, k, v, state, bias=ctx.score_bias, **extra)
        return self.merge_heads(out, ctx)


class CrossAttention(_Attention):
    """Attention from the decoder to the encoder output (``ctx.memory``); no positions, never causal."""

    def __init__(self, d_model: int, heads: int, kv_heads: int, kernel: AttentionKernel, *, bias: bool = True,
                 qkv_bias: bool | None = None, head_dim: int | None = None):
        super().__init__(d_model, heads, kv_heads, kernel, bias=bias, head_dim=head_dim)
        qkv_bias = bias if qkv_bias is None else qkv_bias
        self.q_proj = nn.Linear(d_model, heads * self.head_dim, bias=qkv_bias)
        self.kv_proj = nn.Linear(d_model, 2 * kv_heads * self.head_dim, bias=qkv_bias)

    def memory_kv(self, memory: Tensor) -> tuple[Tensor, Tensor]:
        k, v = self.kv_proj(memory).chunk(2, dim=-1)
        return self.split_heads(k, self.kv_heads), self.split_heads(v, self.kv_heads)

    def forward(self, x: Tensor, ctx: MixerContext) -> Tensor:
        q = self.scale_queries(self.split_heads(self.q_proj(x), self.heads))
        if ctx.cache is None:
            k, v = self.memory_kv(ctx.memory)
            return self.merge_heads(self.kernel(q, k, v, causal=False, key_padding_mask=ctx.memory_padding_mask))
        state = ctx.cache.get(self)
        if state is None:
            # padding decided once per source, not per step and layer
            state = ctx.cache[self] = StaticKV(*self.memory_kv(ctx.memory), drop_empty_padding(ctx.memory_padding_mask))
        k, v, padding, group = state.grouped()
        out = self.kernel(fold_beams(q, group), k, v, causal=False, key_padding_mask=padding)
        return self.merge_heads(unfold_beams(out, group))


def fold_beams(q: Tensor, group: int) -> Tensor:
    """(rows, heads, n, d) -> (rows / group, heads, group · n, d): a sentence's beams as one query block."""
    if group == 1:
        return q
    rows, heads, n, dim = q.shape
    return q.view(rows // group, group, heads, n, dim).transpose(1, 2).reshape(rows // group, heads, group * n, dim)


def unfold_beams(out: Tensor, group: int) -> Tensor:
    """The inverse of :func:`fold_beams`."""
    if group == 1:
        return out
    sources, heads, gn, dim = out.shape
    n = gn // group
    return out.view(sources, heads, group, n, dim).transpose(1, 2).reshape(sources * group, heads, n, dim)
