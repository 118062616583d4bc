"""ALiBi folded into q·k (attention/folded_bias.py) against the dense reference."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from attention.attn_oracle import grads, make_bias, qkv, reference

import hybridformer.attention.chunked as chunked_module
from hybridformer.attention import ALiBi, ScoreBias, T5RelativeBias, build_attention


def _grads(out: torch.Tensor, *tensors: torch.Tensor) -> list[torch.Tensor]:
    torch.manual_seed(1)  # the same output weights for the kernel and the oracle
    return grads(out, *tensors)


@pytest.fixture
def folded_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts calls of the folded path, so a test knows which path it checked; small shapes fold too."""
    monkeypatch.setattr(chunked_module.ChunkedAttention, "fold_min_queries", 1)
    calls: list[int] = []
    inner = chunked_module.folded_bias_attention

    def spy(*args, **kwargs):
        calls.append(1)
        return inner(*args, **kwargs)

    monkeypatch.setattr(chunked_module, "folded_bias_attention", spy)
    return calls


def test_alibi_offers_slopes_only_when_positions_line_up_with_the_causal_mask() -> None:
    alibi = ALiBi(4)
    assert torch.equal(alibi(torch.arange(10), torch.arange(10)).distance_slopes(), alibi.slopes)
    assert alibi(torch.arange(7, 10), torch.arange(10)).distance_slopes() is not None  # queries = the last keys
    assert alibi(torch.arange(9, 10), torch.arange(10)).with_keys(torch.arange(10)).distance_slopes() is not None
    assert alibi(torch.arange(0, 3), torch.arange(10)).distance_slopes() is None  # queries not at the end
    assert alibi(torch.arange(10), torch.arange(10).flip(0)).distance_slopes() is None  # keys out of order
    assert T5RelativeBias(4)(torch.arange(10), torch.arange(10)).distance_slopes() is None
    plain = alibi(torch.arange(10), torch.arange(10))
    assert ScoreBias(plain.fn, plain.q_pos, plain.k_pos).distance_slopes() is None


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("chunk_size", [1, 4, 8, 64])
def test_folded_alibi_matches_reference_values_and_gradients(causal: bool, chunk_size: int,
                                                            folded_calls: list[int]) -> None:
    q, k, v = qkv(37, grad=True)  # GQA: 4 query heads over 2 key/value heads
    bias = make_bias("alibi", 37, 37)
    out = build_attention("chunked", chunk_size=chunk_size)(q, k, v, causal=causal, bias=bias)
    expected = reference(q, k, v, causal=causal, bias=bias)
    torch.testing.assert_close(out, expected, atol=1e-10, rtol=1e-7)
    for got, want in zip(_grads(out, q, k, v), _grads(expected, q, k, v), strict=True):
        torch.testing.assert_close(got, want, atol=1e-9, rtol=1e-7)
    assert folded_calls


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("q_len", [1, 5, 13])
def test_folded_alibi_bottom_right_with_fewer_queries(causal: bool, q_len: int, folded_calls: list[int]) -> None:
    """Decoding and chunked prefill: queries are the last keys, some chunks start after key 0."""
    q, k, v = qkv(q_len, 21, grad=True)
    bias = make_bias("alibi", q_len, 21)
    out = build_attention("chunked", chunk_size=4)(q, k, v, causal=causal, bias=bias)
    expected = reference(q, k, v, causal=causal, bias=bias)
    torch.testing.assert_close(out, expected, atol=1e-10, rtol=1e-7)
    for got, want in zip(_grads(out, q, k, v), _grads(expected, q, k, v), strict=True):
        torch.testing.assert_close(got, want, atol=1e-9, rtol=1e-7)
    assert folded_calls


def test_full_with_alibi_takes_the_folded_path(folded_calls: list[int]) -> None:
    q, k, v = qkv(29)
    bias = make_bias("alibi", 29, 29)
    out = build_attention("full", chunk_size=8)(q, k, v, causal=True, bias=bias)
    torch.testing.assert_close(out, reference(q, k, v, causal=True, bias=bias))
    assert folded_calls


def test_shifted_positions_still_fold(folded_calls: list[int]) -> None:
    """Positions need not start at 0 (a continued sequence): only their alignment matters."""
    q, k, v = qkv(11)
    bias = ALiBi(4)(torch.arange(100, 111), torch.arange(100, 111))
    out = build_attention("chunked", chunk_size=4)(q, k, v, causal=True, bias=bias)
    torch.testing.assert_close(out, reference(q, k, v, causal=True, bias=bias))
    assert folded_calls


def test_a_decoding_step_keeps_the_dense_bias_path(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    monkeypatch.setattr(chunked_module, "folded_bias_attention", lambda *a, **k: calls.append(1))
    q, k, v = qkv(1, 21)
    bias = make_bias("alibi", 1, 21)
    out = build_attention("chunked")(q, k, v, causal=True, bias=bias)
    torch.testing.assert_close(out, reference(q, k, v, causal=True, bias=bias))
    assert not calls


def test_padding_and_dropout_keep_the_general_path(folded_calls: list[int]) -> None:
    q, k, v = qkv(9)
    bias = make_bias("alibi", 9, 9)
    kernel = build_attention("chunked", chunk_size=4, dropout=0.5)
    kernel(q, k, v, causal=True, bias=bias, key_padding_mask=torch.eye(2, 9, dtype=torch.bool))
    kernel.train()(q, k, v, causal=True, bias=bias)
    assert not folded_calls
    kernel.eval()(q, k, v, causal=True, bias=bias)
    assert folded_calls


@pytest.mark.parametrize("causal", [True, False])
def test_folded_alibi_fp32_error_stays_small_on_a_longer_sequence(causal: bool) -> None:
    """fp32 rounds each score to ~eps·|slope·(k - c)|: with 256-query chunks the output error stays
    below 1e-5 (measured 5e-6; 1024-query chunks give 1.7e-5, gradients 4.7e-5)."""
    torch.manual_seed(0)
    length, heads = 1024, 8  # 8 heads: the steepest ALiBi slope is 1/2
    q, k, v = (torch.randn(1, heads, length, 32, dtype=torch.float64, requires_grad=True) for _ in range(3))
    bias64 = ALiBi(heads).double()(torch.arange(length), torch.arange(length))
    expected = build_attention("reference")(q, k, v, causal=causal, bias=bias64)
    q32, k32, v32 = (t.detach().float().requires_grad_() for t in (q, k, v))
    bias32 = dataclasses.replace(bias64, slopes=ALiBi(heads).slopes)
    out = build_attention("chunked", chunk_size=256)(q32, k32, v32, causal=causal, bias=bias32)
    assert (out.double() - expected).abs().max() < 1e-5
    weights = torch.randn_like(expected)
    for got, want in zip(torch.autograd.grad((out * weights.float()).sum(), (q32, k32, v32)),
                         torch.autograd.grad((expected * weights).sum(), (q, k, v)), strict=True):
        assert (got.double() - want).abs().max() < 3e-5
