"""Linear attention and Performer against their own dense closed form; Performer converges to softmax."""

from __future__ import annotations

import pytest
import torch
from attention.attn_oracle import H, padding, qkv, reference

from hybridformer.attention import build_attention
from hybridformer.attention.base import expand_kv


def dense_kernelized(kernel, q, k, v, *, causal: bool, key_padding_mask=None):
    """Closed form: (φ(q) φ(k)ᵀ ⊙ mask) v / row sums, written out as an L × L matrix."""
    phi_q = kernel.features(q, is_query=True)
    phi_k = kernel.features(expand_kv(k, H), is_query=False)
    weights = phi_q @ phi_k.transpose(-1, -2)
    if causal:
        weights = weights.tril(k.shape[2] - q.shape[2])
    if key_padding_mask is not None:
        weights = weights.masked_fill(key_padding_mask[:, None, None, :], 0.0)
    return (weights @ expand_kv(v, H)) / (weights.sum(-1, keepdim=True) + kernel.eps)


@pytest.mark.parametrize("name", ["linear", "performer"])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("pad", [False, True])
def test_matches_dense_closed_form(name: str, causal: bool, pad: bool) -> None:
    kernel = build_attention(name, chunk_size=8, **({"feature_dim": 32} if name == "performer" else {}))
    q, k, v = qkv(37)
    mask = padding(37) if pad else None
    out = kernel(q, k, v, causal=causal, key_padding_mask=mask)
    torch.testing.assert_close(out, dense_kernelized(kernel, q, k, v, causal=causal, key_padding_mask=mask))


@pytest.mark.parametrize("name", ["linear", "performer"])
def test_causal_with_fewer_queries_uses_earlier_keys_as_prefix(name: str) -> None:
    kernel = build_attention(name, chunk_size=4)
    q, k, v = qkv(6, 23)
    out = kernel(q, k, v, causal=True)
    torch.testing.assert_close(out, dense_kernelized(kernel, q, k, v, causal=True))


@pytest.mark.parametrize("segment_len", [4096, 5])  # 5: the checkpointed segment-by-segment training path
def test_linear_gradients_match_closed_form(segment_len: int) -> None:
    kernel = build_attention("linear", chunk_size=4)
    kernel.segment_len = segment_len
    q, k, v = qkv(21, grad=True)
    out, expected = kernel(q, k, v, causal=True), dense_kernelized(kernel, q, k, v, causal=True)
    weights = torch.randn_like(out)
    got = torch.autograd.grad((out * weights).sum(), (q, k, v))
    want = torch.autograd.grad((expected * weights).sum(), (q, k, v))
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w)


def test_performer_error_to_softmax_falls_with_feature_dim() -> None:
    q, k, v = qkv(32)
    q, k = q * 0.5, k * 0.5
    exact = reference(q, k, v, causal=False)

    def error(feature_dim: int) -> float:
        errs = [(build_attention("performer", feature_dim=feature_dim, seed=s)(q, k, v, causal=False) - exact)
                .pow(2).mean().sqrt() for s in range(4)]
        return float(torch.stack(errs).mean())

    small, medium, large = error(8), error(64), error(1024)
    assert large < medium < small
    assert large < 0.5 * small


def test_performer_features_reproducible_and_redrawn_only_when_asked() -> None:
    q, k, v = qkv(10)
    a, b = build_attention("performer", feature_dim=16, seed=3), build_attention("performer", feature_dim=16, seed=3)
    torch.testing.assert_close(a(q, k, v, causal=False), b(q, k, v, causal=False))
    fixed = a.train()
    first = fixed(q, k, v, causal=False)
    torch.testing.assert_close(fixed(q, k, v, causal=False), first)
    redraw = build_attention("performer", feature_dim=16, seed=3, redraw=True).train()
    before = redraw(q, k, v, causal=False)
    assert not torch.allclose(redraw(q, k, v, causal=False), before)
    assert int(redraw.draws) == 2 and "draws" in redraw.state_dict()
