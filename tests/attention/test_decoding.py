"""Every kernel's decoding state reproduces its full causal forward, token by token and in chunks."""

from __future__ import annotations

import pytest
import torch
from attention.attn_oracle import make_bias, qkv

from hybridformer import ModelConfig, build_model
from hybridformer.attention import build_attention
from hybridformer.cache import DecodingCache, KVCache, LinearAttentionState, RollingKVCache

KERNELS = [
    ("full", {}, "alibi"),
    ("reference", {}, "t5"),
    ("chunked", {"chunk_size": 4}, "alibi"),
    ("sliding_window", {"window": 4, "num_global": 2, "chunk_size": 3}, "t5"),
    ("sliding_window", {"window": 4, "num_global": 2, "chunk_size": 3}, None),
    ("block_sparse", {"block_size": 3, "num_random_blocks": 1}, "alibi"),
    ("linear", {"chunk_size": 4}, None),
    ("performer", {"feature_dim": 16, "chunk_size": 4}, None),
]


@pytest.mark.parametrize("name,opts,bias_kind", KERNELS)
@pytest.mark.parametrize("pieces", [[1] * 19, [5, 1, 1, 7, 1, 4], [1, 8, 1, 1, 3, 5], [13, 1, 5]])
def test_step_by_step_equals_full_causal_forward(name: str, opts: dict, bias_kind: str | None, pieces: list) -> None:
    torch.manual_seed(0)
    kernel = build_attention(name, **opts)
    q, k, v = qkv(19)
    bias = make_bias(bias_kind, 19, 19, bidirectional=False)
    full = kernel(q, k, v, causal=True, bias=bias)
    state, outs, start = kernel.new_state(), [], 0
    for n in pieces:
        rows = slice(start, start + n)
        step_bias = None if bias is None else type(bias)(bias.fn, bias.q_pos[rows], bias.k_pos)
        outs.append(kernel.step(q[:, :, rows], k[:, :, rows], v[:, :, rows], state, bias=step_bias))
        start += n
    torch.testing.assert_close(torch.cat(outs, dim=2), full)


def test_kv_cache_reorders_follow_the_rows_through_growth_and_shrinking() -> None:
    """Beam reorders gather straight into new buffers; appends, capacity growth and fewer rows (finished
    sentences) keep every row's keys equal to its history's."""
    torch.manual_seed(0)
    cache, history = KVCache(), torch.empty(6, 2, 0, 4)
    for t in range(70):  # grows past the first 64 slots
        k = torch.randn(len(history), 2, 1, 4)
        keys, values = cache.append(k, -k)
        history = torch.cat([history, k], 2)
        torch.testing.assert_close(keys, history, rtol=0, atol=0)
        torch.testing.assert_close(values, -history, rtol=0, atol=0)
        index = torch.randint(0, len(history), (len(history) - (t == 40),))  # one row fewer at t = 40
        cache.reorder(index)
        history = history[index]
        torch.testing.assert_close(cache.keys[:, :, : cache.length], history, rtol=0, atol=0)


def test_rolling_cache_memory_is_bounded_by_window() -> None:
    kernel = build_attention("sliding_window", window=4, num_global=2)
    state = kernel.new_state()
    assert isinstance(state, RollingKVCache)
    q, k, v = qkv(60)
    for t in range(60):
        kernel.step(q[:, :, t : t + 1], k[:, :, t : t + 1], v[:, :, t : t + 1], state)
        assert state.keys.shape[2] == 2 + 4 + 1  # a ring: globals, the window, the slot the next key takes
    assert sorted(state.kept_positions.tolist()) == [0, 1, 55, 56, 57, 58, 59]


def test_linear_state_is_constant_size() -> None:
    kernel = build_attention("linear")
    state = kernel.new_state()
    assert isinstance(state, LinearAttentionState)
    q, k, v = qkv(30)
    for t in range(30):
        kernel.step(q[:, :, t : t + 1], k[:, :, t : t + 1], v[:, :, t : t + 1], state)
    assert state.kv.shape == (2, 4, 8, 8) and state.length == 30


MODEL_KERNELS = [
    ("full", {}, "alibi"), ("chunked", {"chunk_size": 4}, "t5"),
    ("sliding_window", {"window": 3, "num_global": 1, "chunk_size": 4}, "alibi"),
    ("block_sparse", {"block_size": 4, "num_random_blocks": 1}, "rope"),
    ("linear", {"chunk_size": 4}, "rope"), ("performer", {"feature_dim": 16, "chunk_size": 4}, "sinusoidal"),
]


@pytest.mark.parametrize("name,opts,position", MODEL_KERNELS)
def test_decoder_lm_decodes_incrementally_like_its_full_forward(name: str, opts: dict, position: str) -> None:
    cfg = ModelConfig(arch="decoder_lm", vocab_size=40, d_model=32, heads=4, kv_heads=2, ffn_dim=48,
                      position=position, dropout=0.0, decoder={"layers": 2, "attention": {"name": name, **opts}})
    model = build_model(cfg).eval()
    tokens = torch.randint(3, 40, (2, 17))
    with torch.no_grad():
        full = model(tokens)
        cache, outs, start = DecodingCache(), [], 0
        for n in [4, 1, 1, 6, 1, 1, 1, 2]:
            outs.append(model.decode(tokens[:, start : start + n], cache=cache, offset=start))
            start += n
    torch.testing.assert_close(torch.cat(outs, dim=1), full, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("name", ["full", "reference", "chunked"])
def test_a_left_padded_row_attends_to_the_bit_as_alone(name: str) -> None:
    """A one-token step over left-padded rows (continuous batching) gives each row exactly the bits it gets alone:
    one masked call over the padded columns sums in another order (seen: 1e-7 off), which bf16 products amplify."""
    gen = torch.Generator().manual_seed(0)
    kernel, lengths = build_attention(name), [20, 3, 11, 11, 7]
    width = max(lengths)
    q = torch.randn(len(lengths), 4, 1, 16, generator=gen)
    k, v = (torch.randn(len(lengths), 2, width + 1, 16, generator=gen) for _ in range(2))
    batch = KVCache()
    batch.append(k[:, :, :width], v[:, :, :width])
    start = torch.tensor([width - n for n in lengths])
    together = kernel.step(q, k[:, :, width:], v[:, :, width:], batch, start=start)
    for row, first in enumerate(start.tolist()):
        alone = KVCache()
        alone.append(k[row : row + 1, :, first:width], v[row : row + 1, :, first:width])
        assert torch.equal(kernel.step(q[row : row + 1], k[row : row + 1, :, width:], v[row : row + 1, :, width:],
                                       alone), together[row : row + 1]), row
