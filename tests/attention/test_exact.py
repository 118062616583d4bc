"""Exact mechanisms (chunked, sliding_window, block_sparse) against the dense reference, values and gradients."""

from __future__ import annotations

import pytest
import torch
from attention.attn_oracle import B, H, band, grads, make_bias, padding, qkv, reference

from hybridformer.attention import build_attention
from hybridformer.attention.base import attend_lse, dense_attend_lse

CASES = [(causal, pad, bias) for causal in (False, True) for pad in (False, True) for bias in (None, "alibi", "t5")]


@pytest.mark.parametrize("causal,pad,bias_kind", CASES)
def test_chunked_matches_reference(causal: bool, pad: bool, bias_kind: str | None) -> None:
    q, k, v = qkv(37)
    mask, bias = padding(37) if pad else None, make_bias(bias_kind, 37, 37)
    out = build_attention("chunked", chunk_size=8)(q, k, v, causal=causal, key_padding_mask=mask, bias=bias)
    expected = reference(q, k, v, causal=causal, key_padding_mask=mask, bias=bias)
    torch.testing.assert_close(out, expected, atol=1e-10, rtol=1e-7)


def test_chunked_bottom_right_causal_with_fewer_queries() -> None:
    q, k, v = qkv(5, 21)
    bias = make_bias("alibi", 5, 21)
    out = build_attention("chunked", chunk_size=4)(q, k, v, causal=True, bias=bias)
    torch.testing.assert_close(out, reference(q, k, v, causal=True, bias=bias))


@pytest.mark.parametrize("causal", [False, True])
def test_chunked_gradients_match_reference_including_bias_parameters(causal: bool) -> None:
    q, k, v = qkv(29, grad=True)
    mask, bias = padding(29), make_bias("t5", 29, 29)
    table = bias.fn.__self__.table.weight
    out = build_attention("chunked", chunk_size=8)(q, k, v, causal=causal, key_padding_mask=mask, bias=bias)
    expected = reference(q, k, v, causal=causal, key_padding_mask=mask, bias=bias)
    torch.manual_seed(1)
    got = grads(out, q, k, v, table)
    torch.manual_seed(1)
    want = grads(expected, q, k, v, table)
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, atol=1e-10, rtol=1e-7)


@pytest.mark.parametrize("causal,pad,bias_kind", CASES)
def test_sliding_window_matches_banded_reference(causal: bool, pad: bool, bias_kind: str | None) -> None:
    q, k, v = qkv(37)
    mask, bias = padding(37) if pad else None, make_bias(bias_kind, 37, 37)
    kernel = build_attention("sliding_window", window=5, num_global=3, chunk_size=8)
    out = kernel(q, k, v, causal=causal, key_padding_mask=mask, bias=bias)
    expected = reference(q, k, v, causal=causal, key_padding_mask=mask, bias=bias, allowed=band(37, 37, 5, 3))
    torch.testing.assert_close(out, expected, atol=1e-10, rtol=1e-7)


@pytest.mark.parametrize("causal", [False, True])
def test_sliding_window_wider_than_sequence_is_full_attention(causal: bool) -> None:
    q, k, v = qkv(23)
    mask = padding(23)
    out = build_attention("sliding_window", window=64, chunk_size=5)(q, k, v, causal=causal, key_padding_mask=mask)
    torch.testing.assert_close(out, reference(q, k, v, causal=causal, key_padding_mask=mask))


def test_sliding_window_bottom_right_causal() -> None:
    q, k, v = qkv(6, 30)
    out = build_attention("sliding_window", window=4, num_global=2, chunk_size=4)(q, k, v, causal=True)
    torch.testing.assert_close(out, reference(q, k, v, causal=True, allowed=band(6, 30, 4, 2)))


@pytest.mark.parametrize("causal", [False, True])
def test_sliding_window_gradients_match_reference(causal: bool) -> None:
    q, k, v = qkv(26, grad=True)
    mask, bias = padding(26), make_bias("t5", 26, 26)
    table = bias.fn.__self__.table.weight
    kernel = build_attention("sliding_window", window=3, num_global=2, chunk_size=4)
    out = kernel(q, k, v, causal=causal, key_padding_mask=mask, bias=bias)
    expected = reference(q, k, v, causal=causal, key_padding_mask=mask, bias=bias, allowed=band(26, 26, 3, 2))
    torch.manual_seed(1)
    got = grads(out, q, k, v, table)
    torch.manual_seed(1)
    for g, w in zip(got, grads(expected, q, k, v, table), strict=True):
        torch.testing.assert_close(g, w, atol=1e-10, rtol=1e-7)


@pytest.mark.parametrize("causal,pad,bias_kind", CASES)
def test_block_sparse_matches_its_mask_on_reference(causal: bool, pad: bool, bias_kind: str | None) -> None:
    q, k, v = qkv(45)
    mask, bias = padding(45) if pad else None, make_bias(bias_kind, 45, 45)
    kernel = build_attention("block_sparse", block_size=4, window_blocks=1, global_blocks=1, num_random_blocks=2)
    out = kernel(q, k, v, causal=causal, key_padding_mask=mask, bias=bias)
    allowed = kernel.dense_mask(45, causal=causal)
    expected = reference(q, k, v, causal=causal, key_padding_mask=mask, bias=bias, allowed=allowed)
    torch.testing.assert_close(out, expected, atol=1e-10, rtol=1e-7)


def test_block_sparse_gradients_match_reference() -> None:
    q, k, v = qkv(24, grad=True)
    kernel = build_attention("block_sparse", block_size=4, num_random_blocks=1)
    out = kernel(q, k, v, causal=True)
    expected = reference(q, k, v, causal=True, allowed=kernel.dense_mask(24, causal=True))
    torch.manual_seed(1)
    got = grads(out, q, k, v)
    torch.manual_seed(1)
    for g, w in zip(got, grads(expected, q, k, v), strict=True):
        torch.testing.assert_close(g, w)


def test_block_sparse_pattern_is_bigbird_and_reproducible_from_seed() -> None:
    options = {"block_size": 1, "window_blocks": 1, "global_blocks": 2, "num_random_blocks": 3}
    kernel = build_attention("block_sparse", **options, seed=7)
    mask = kernel.dense_mask(32, causal=False)
    i = torch.arange(32)
    assert mask[i[1:], i[:-1]].all() and mask[i, i].all() and mask[i[:-1], i[1:]].all()  # sliding blocks
    assert mask[:, :2].all() and mask[:2, :].all()  # global rows and columns
    per_row = mask.sum(1)  # 3 window + 2 global + 3 random (fewer where window and global overlap, or at the end)
    assert (per_row[3:31] == 8).all() and per_row[2] == 7 and per_row[31] == 7
    same, other = build_attention("block_sparse", **options, seed=7), build_attention("block_sparse", **options, seed=8)
    assert torch.equal(same.dense_mask(32, causal=False), mask)
    assert not torch.equal(other.dense_mask(32, causal=False), mask)
    causal = kernel.dense_mask(32, causal=True)
    assert not causal.triu(1).any()


def test_gqa_shapes_for_every_exact_kernel() -> None:
    q, k, v = qkv(19)
    for name, opts in [("chunked", {}), ("sliding_window", {"window": 3}), ("block_sparse", {"block_size": 4})]:
        out = build_attention(name, **opts)(q, k, v, causal=True)
        assert out.shape == (B, H, 19, q.shape[-1])


@pytest.mark.parametrize("num_global", [0, 3])
def test_sliding_window_inference_bands_match_reference(num_global: int) -> None:
    """Without gradients a causal call takes the band-block path (several blocks of BAND_QUERIES queries, sinks
    merged by log-sum-exp); with gradients the masked all-blocks path. Both equal the dense oracle, in float32
    (SDPA's fused CPU kernel) as in float64."""
    for dtype, tol in ((torch.float64, 1e-10), (torch.float32, 1e-5)):
        q, k, v = qkv(101, dtype=dtype)
        kernel = build_attention("sliding_window", window=7, num_global=num_global)
        expected = reference(q, k, v, causal=True, allowed=band(101, 101, 7, num_global))
        with torch.no_grad():
            fast = kernel(q, k, v, causal=True)
        slow = kernel(q.requires_grad_(), k, v, causal=True)
        torch.testing.assert_close(fast, expected, atol=tol, rtol=0)
        torch.testing.assert_close(slow.detach(), expected, atol=tol, rtol=0)


def test_dense_attend_lse_matches_the_fused_kernel() -> None:
    """The materialized fallback of ``attend_lse`` (devices without SDPA's CPU flash kernel) computes the same."""
    q, k, v = qkv(9, 13, dtype=torch.float32)
    mask = torch.zeros(9, 13).masked_fill(torch.rand(9, 13) < 0.3, float("-inf"))
    mask[:, 0] = 0.0
    for got, want in zip(dense_attend_lse(q, k, v, mask), attend_lse(q, k, v, mask), strict=True):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
