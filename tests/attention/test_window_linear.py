"""window_linear (LoLCATs): the blocked kernel against the math written densely, causality, cached decoding."""

from __future__ import annotations

import math

import pytest
import torch

from hybridformer.attention import build_attention
from hybridformer.attention.base import expand_kv
from hybridformer.errors import ConfigError

from .attn_oracle import H, padding, qkv


def kernel(window: int = 4, chunk_size: int = 3, feature_dim: int = 6):
    """A bound kernel with random (not identity) maps and gates, in float64."""
    attention = build_attention("window_linear", window=window, chunk_size=chunk_size, feature_dim=feature_dim)
    attention.bind(H, 8)
    with torch.no_grad():
        for p in (attention.q_map, attention.k_map, attention.gate):
            p.add_(torch.randn_like(p))
    return attention.double()


def dense(attention, q, k, v, key_padding_mask=None):
    """y = (g Σ_window e^(s − m) v + Σ_older φ(q)·φ(k) v) / (the same weights summed), with (L, L) masks."""
    k, v = expand_kv(k, q.shape[1]), expand_kv(v, q.shape[1])
    length, w = q.shape[2], attention.window
    distance = torch.arange(length)[:, None] - torch.arange(length)[None, :]
    keep = torch.ones(1, 1, 1, length, dtype=torch.bool)
    if key_padding_mask is not None:
        keep = ~key_padding_mask[:, None, None, :]
    window = (distance >= 0) & (distance <= w) & keep
    older = (distance > w) & keep
    scores = (q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])).masked_fill(~window, -math.inf)
    top = scores.amax(-1, keepdim=True).nan_to_num(0.0, neginf=0.0)
    gate = torch.sigmoid(attention.gate)[None, :, None, None]
    linear = attention.features(q, is_query=True) @ attention.features(k, is_query=False).transpose(-1, -2)
    weights = gate * torch.exp(scores - top) + linear * older
    return (weights @ v) / weights.sum(-1, keepdim=True).clamp_min(1e-300)


@pytest.mark.parametrize("length", [1, 4, 5, 13, 30])
@pytest.mark.parametrize(("window", "chunk"), [(4, 3), (2, 8), (6, 6)])
def test_equals_the_dense_math(length, window, chunk):
    attention = kernel(window, chunk)
    q, k, v = qkv(length)
    torch.testing.assert_close(attention(q, k, v, causal=True), dense(attention, q, k, v))


def test_padded_keys_count_nowhere():
    attention = kernel()
    q, k, v = qkv(20)
    mask = padding(20)
    out = attention(q, k, v, causal=True, key_padding_mask=mask)
    expected = dense(attention, q, k, v, mask)
    real = ~mask[1]
    torch.testing.assert_close(out[0], expected[0])
    torch.testing.assert_close(out[1][:, real], expected[1][:, real])


def test_no_query_sees_the_future():
    attention = kernel()
    q, k, v = qkv(17)
    out = attention(q, k, v, causal=True)
    k2, v2 = k.clone(), v.clone()
    k2[:, :, 9:], v2[:, :, 9:] = torch.randn_like(k2[:, :, 9:]), torch.randn_like(v2[:, :, 9:])
    torch.testing.assert_close(attention(q, k2, v2, causal=True)[:, :, :9], out[:, :, :9])


@pytest.mark.parametrize("pieces", [[1] * 15, [5, 1, 1, 8], [15], [3, 7, 5]])
def test_cached_decoding_equals_the_full_forward_with_flat_memory(pieces):
    attention = kernel(window=4, chunk_size=3)
    q, k, v = qkv(15)
    state, outs, at = attention.new_state(), [], 0
    for n in pieces:
        outs.append(attention.step(q[:, :, at:at + n], k[:, :, at:at + n], v[:, :, at:at + n], state))
        at += n
        assert state.keys.shape[2] == min(at, attention.window)  # the window ring, then the sums: flat
    torch.testing.assert_close(torch.cat(outs, 2), attention(q, k, v, causal=True))
    assert state.kv.shape == (2, H, 2 * 6, 8)


def test_left_padded_rows_decode_as_if_alone():
    attention = kernel(window=3, chunk_size=2)
    q, k, v = qkv(12)
    start = torch.tensor([0, 4])  # row 1: 4 columns of left padding, then its own 8 tokens
    state = attention.new_state()
    out = torch.cat([attention.step(q[:, :, :6], k[:, :, :6], v[:, :, :6], state, start=start)]
                    + [attention.step(q[:, :, i:i + 1], k[:, :, i:i + 1], v[:, :, i:i + 1], state, start=start)
                       for i in range(6, 12)], 2)
    alone = attention(q[1:, :, 4:], k[1:, :, 4:], v[1:, :, 4:], causal=True)
    torch.testing.assert_close(out[1:, :, 4:], alone)
    torch.testing.assert_close(out[:1], attention(q[:1], k[:1], v[:1], causal=True))


def test_maps_and_gates_learn():
    attention = kernel()
    q, k, v = qkv(12)
    attention(q, k, v, causal=True).square().sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in attention.parameters())


def test_refuses_an_encoder():
    with pytest.raises(ConfigError, match="window_linear.*causal"):
        build_attention("window_linear").check(causal=False, position="rope", where="encoder")
    with pytest.raises(ConfigError, match="window_linear"):
        build_attention("window_linear", window=0)
