"""StreamingLLM sink positions (``sliding_window:sink_positions=cache``) against a per-query oracle.

The oracle is StreamingLLM written out (Xiao et al., 2023): for each query, gather the keys the cache
keeps (the sinks, then the window), number them 0, 1, ... in that order, rotate the raw queries and keys
at those cache positions, and attend densely. The kernel instead receives keys rotated once at their
absolute positions and re-rotates only the queries of the sink scores.
"""

from __future__ import annotations

import pytest
import torch
from attention.attn_oracle import band, make_bias, qkv, reference

from hybridformer.attention import ALiBi, build_attention, local
from hybridformer.errors import ConfigError
from hybridformer.position import RotaryEmbedding

WINDOW, SINKS, LENGTH = 5, 2, 23  # queries past position SINKS + WINDOW = 7 see the sinks from cache position 7


def streaming_oracle(q, k, v, rotary: RotaryEmbedding | None, *, window: int, sinks: int, alibi: ALiBi | None = None):
    """q, k, v: raw (unrotated) (batch, heads|kv_heads, L, d) -> (batch, heads, L, d), one query at a time."""
    heads, length = q.shape[1], q.shape[2]
    k, v = k.repeat_interleave(heads // k.shape[1], 1), v.repeat_interleave(heads // v.shape[1], 1)
    outputs = []
    for p in range(length):
        kept = sorted({*range(min(sinks, p + 1)), *range(max(0, p - window), p + 1)})
        keys, query = k[:, :, kept], q[:, :, [p] * len(kept)]
        if rotary is not None:
            rotation = rotary(torch.arange(len(kept)))  # cache positions 0 .. len(kept) - 1
            keys, query = rotation.rotate(keys), rotation.rotate(query)
        query = query[:, :, -1:]  # the query sits at the last cache slot
        scores = query @ keys.transpose(-1, -2) / q.shape[-1] ** 0.5
        if alibi is not None:
            scores = scores + alibi.scores(torch.tensor([[len(kept) - 1]]), torch.arange(len(kept))[None])
        outputs.append(scores.softmax(-1) @ v[:, :, kept])
    return torch.cat(outputs, dim=2)


@pytest.mark.parametrize("scaling", [None, "yarn"])
def test_rope_sinks_at_cache_positions_match_streaming_llm(scaling):
    torch.manual_seed(0)
    q, k, v = qkv(LENGTH)
    options = {} if scaling is None else {"scaling": "yarn", "factor": 4.0, "original_max_positions": 8}
    rotary = RotaryEmbedding(q.shape[-1], base=10.0, **options)  # a small base: large angles, a strict test
    rotation = rotary(torch.arange(LENGTH))
    kernel = build_attention("sliding_window", window=WINDOW, num_global=SINKS, chunk_size=4, sink_positions="cache")
    got = kernel(rotation.rotate(q), rotation.rotate(k), v, causal=True, rope=rotation)
    expected = streaming_oracle(q, k, v, rotary, window=WINDOW, sinks=SINKS)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
    absolute = build_attention("sliding_window", window=WINDOW, num_global=SINKS)(
        rotation.rotate(q), rotation.rotate(k), v, causal=True)
    late = slice(SINKS + WINDOW + 1, None)  # only queries past the first full cache differ
    torch.testing.assert_close(got[:, :, :late.start], absolute[:, :, :late.start], atol=1e-5, rtol=0)
    assert (got[:, :, late] - absolute[:, :, late]).abs().max() > 1e-3


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-5), (torch.bfloat16, 0.05)])
@pytest.mark.parametrize("sink_positions", ["absolute", "cache"])
def test_products_path_matches_the_oracles(monkeypatch, dtype, tol, sink_positions):
    """The bf16 weight format's band path (``product_dtype``: scores and weighted sums as GEMMs, the sinks' scores
    as the first columns of one softmax), in blocks of 4 queries (the last one partial), against the StreamingLLM
    oracle (whose float32 rotation tables bound the float64 tolerance, as above) or the Longformer band; and in
    float64 equal to the SDPA path's output."""
    monkeypatch.setattr(local, "PRODUCT_QUERIES", 4)
    torch.manual_seed(3)
    q, k, v = qkv(LENGTH)
    rotary = RotaryEmbedding(q.shape[-1], base=10.0)
    rotation = rotary(torch.arange(LENGTH))
    kernel = build_attention("sliding_window", window=WINDOW, num_global=SINKS, sink_positions=sink_positions)
    with torch.no_grad():
        sdpa = kernel(rotation.rotate(q), rotation.rotate(k), v, causal=True, rope=rotation)
        kernel.product_dtype = dtype
        got = kernel(rotation.rotate(q), rotation.rotate(k), v, causal=True, rope=rotation)
    if sink_positions == "cache":
        expected = streaming_oracle(q, k, v, rotary, window=WINDOW, sinks=SINKS)
    else:
        expected = reference(rotation.rotate(q), rotation.rotate(k), v, causal=True,
                             allowed=band(LENGTH, LENGTH, WINDOW, SINKS))
    torch.testing.assert_close(got, expected, atol=tol, rtol=0)
    if dtype == torch.float64:
        torch.testing.assert_close(got, sdpa, atol=1e-12, rtol=0)


def test_alibi_sinks_at_cache_positions_match_streaming_llm():
    torch.manual_seed(1)
    q, k, v = qkv(LENGTH)
    alibi = ALiBi(q.shape[1]).double()
    kernel = build_attention("sliding_window", window=WINDOW, num_global=SINKS, sink_positions="cache")
    got = kernel(q, k, v, causal=True, bias=alibi(torch.arange(LENGTH), torch.arange(LENGTH)))
    expected = streaming_oracle(q, k, v, None, window=WINDOW, sinks=SINKS, alibi=alibi)
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize("pieces", [[1] * LENGTH, [9, 1, 1, 6, 1, 5], [3, 12, 8], [LENGTH - 4, 1, 3]])
@pytest.mark.parametrize("bias_kind", [None, "t5"])
@pytest.mark.parametrize("product_dtype", [None, torch.float64])  # the bf16 format's GEMM path, exact here
def test_decoding_through_the_ring_equals_the_full_forward(pieces, bias_kind, product_dtype):
    torch.manual_seed(2)
    q, k, v = qkv(LENGTH)
    rotation = RotaryEmbedding(q.shape[-1], base=10.0)(torch.arange(LENGTH))
    q, k = rotation.rotate(q), rotation.rotate(k)
    bias = make_bias(bias_kind, LENGTH, LENGTH, bidirectional=False)
    kernel = build_attention("sliding_window", window=WINDOW, num_global=SINKS, sink_positions="cache")
    kernel.product_dtype = product_dtype
    full = kernel(q, k, v, causal=True, bias=bias, rope=rotation)
    state, outs, start = kernel.new_state(), [], 0
    for n in pieces:
        rows = slice(start, start + n)
        piece_rotation = RotaryEmbedding(q.shape[-1], base=10.0)(torch.arange(start, start + n))
        piece_bias = None if bias is None else type(bias)(bias.fn, bias.q_pos[rows], bias.k_pos)
        outs.append(kernel.step(q[:, :, rows], k[:, :, rows], v[:, :, rows], state, bias=piece_bias,
                                rope=piece_rotation))
        start += n
    torch.testing.assert_close(torch.cat(outs, dim=2), full, atol=1e-5, rtol=0)
    assert state.keys.shape[2] == SINKS + WINDOW + 1


def test_bad_option_and_non_causal_use_are_refused():
    with pytest.raises(ConfigError, match="sink_positions must be 'absolute' or 'cache'"):
        build_attention("sliding_window", window=4, num_global=1, sink_positions="relative")
    kernel = build_attention("sliding_window", window=4, num_global=1, sink_positions="cache")
    q, k, v = qkv(6)
    with pytest.raises(ConfigError, match="is for causal stacks"):
        kernel(q, k, v, causal=False)
