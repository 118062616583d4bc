"""Oracles shared by the attention tests: the dense reference kernel with an explicit mask."""

from __future__ import annotations

import torch
from torch import Tensor

from hybridformer.attention import ALiBi, ReferenceAttention, ScoreBias, T5RelativeBias

B, H, KV, D = 2, 4, 2, 8


def qkv(q_len: int, k_len: int | None = None, *, dtype: torch.dtype = torch.float64, grad: bool = False):
    k_len = q_len if k_len is None else k_len
    q = torch.randn(B, H, q_len, D, dtype=dtype, requires_grad=grad)
    k = torch.randn(B, KV, k_len, D, dtype=dtype, requires_grad=grad)
    v = torch.randn(B, KV, k_len, D, dtype=dtype, requires_grad=grad)
    return q, k, v


def padding(k_len: int) -> Tensor:
    """Batch row 1 has its last 5 keys and key 2 padded."""
    mask = torch.zeros(B, k_len, dtype=torch.bool)
    mask[1, -5:] = True
    mask[1, 2] = True
    return mask


def make_bias(kind: str | None, q_len: int, k_len: int, *, bidirectional: bool = True) -> ScoreBias | None:
    """A score bias over queries at positions k_len-q_len.. and keys 0..k_len-1."""
    if kind is None:
        return None
    module = ALiBi(H) if kind == "alibi" else T5RelativeBias(H, num_buckets=8, max_distance=16,
                                                             bidirectional=bidirectional).double()
    return module(torch.arange(k_len - q_len, k_len), torch.arange(k_len))


def reference(q: Tensor, k: Tensor, v: Tensor, *, causal: bool, key_padding_mask: Tensor | None = None,
              bias: ScoreBias | None = None, allowed: Tensor | None = None) -> Tensor:
    """The dense oracle; ``allowed`` (q_len, k_len) is an extra pattern mask entered as a -inf score bias."""
    if allowed is not None:
        q_len, k_len = allowed.shape
        base = bias

        def fn(rows: Tensor, cols: Tensor) -> Tensor:
            extra = torch.zeros(H, *allowed.shape, dtype=q.dtype)
            if base is not None:
                extra = extra + base.dense()
            return extra.masked_fill(~allowed, float("-inf"))[:, rows, cols]

        bias = ScoreBias(fn, torch.arange(q_len), torch.arange(k_len))
    return ReferenceAttention()(q, k, v, causal=causal, key_padding_mask=key_padding_mask, bias=bias)


def band(q_len: int, k_len: int, window: int, num_global: int) -> Tensor:
    """Longformer pattern written out independently: |i - j| <= window, or i or j a global token."""
    i = torch.arange(k_len - q_len, k_len)[:, None]
    j = torch.arange(k_len)[None, :]
    return ((i - j).abs() <= window) | (i < num_global) | (j < num_global)


def grads(out: Tensor, *tensors: Tensor) -> list[Tensor]:
    weights = torch.randn_like(out)
    return list(torch.autograd.grad((out * weights).sum(), tensors))
