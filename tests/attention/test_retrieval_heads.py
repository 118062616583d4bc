"""retrieval_heads: full kv heads beside windowed ones, against a dense per-head mask; its cache; the head scoring."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from hybridformer.attention import build_attention
from hybridformer.errors import ConfigError
from hybridformer.retrieval import _answer_tokens, top_heads

BATCH, HEADS, KV_HEADS, LENGTH, DIM = 2, 6, 3, 21, 8
WINDOW, SINKS = 4, 2


def dense(q, k, v, full_heads):
    """Per head: causal over everything (a full kv head's query heads) or the last WINDOW keys, itself and
    the SINKS first keys (the others), as one masked softmax."""
    rows = torch.arange(q.shape[2])[:, None] + (k.shape[2] - q.shape[2])
    cols = torch.arange(k.shape[2])[None]
    causal = cols <= rows
    band = causal & ((rows - cols <= WINDOW) | (cols < SINKS))
    groups = q.shape[1] // k.shape[1]
    masks = torch.stack([causal if h // groups in full_heads else band for h in range(q.shape[1])])
    return F.scaled_dot_product_attention(q, k.repeat_interleave(groups, 1), v.repeat_interleave(groups, 1),
                                          attn_mask=masks)


@pytest.fixture
def qkv():
    torch.manual_seed(0)
    return (torch.randn(BATCH, HEADS, LENGTH, DIM), torch.randn(BATCH, KV_HEADS, LENGTH, DIM),
            torch.randn(BATCH, KV_HEADS, LENGTH, DIM))


@pytest.mark.parametrize("full_heads", [(1,), (0, 2), (), (0, 1, 2)])
def test_each_head_attends_as_its_dense_mask_says(qkv, full_heads):
    kernel = build_attention("retrieval_heads", full_heads=full_heads, window=WINDOW, num_global=SINKS)
    q, k, v = qkv
    torch.testing.assert_close(kernel(q, k, v, causal=True), dense(q, k, v, set(full_heads)), atol=1e-5, rtol=1e-5)


def test_the_cache_decodes_like_the_full_forward_and_follows_beams(qkv):
    """A prompt, then token by token (the window's ring wraps), then a beam reorder: equal to the full forward."""
    kernel = build_attention("retrieval_heads", full_heads=(2,), window=WINDOW, num_global=SINKS)
    q, k, v = qkv
    full = kernel(q, k, v, causal=True)
    state = kernel.new_state()
    outs = [kernel.step(q[:, :, :7], k[:, :, :7], v[:, :, :7], state)]
    outs += [kernel.step(q[:, :, i : i + 1], k[:, :, i : i + 1], v[:, :, i : i + 1], state) for i in range(7, 15)]
    torch.testing.assert_close(torch.cat(outs, 2), full[:, :, :15], atol=1e-5, rtol=1e-5)
    flipped = torch.tensor([1, 0])
    state.reorder(flipped)
    q, k, v = q[flipped], k[flipped], v[flipped]
    outs = [kernel.step(q[:, :, i : i + 1], k[:, :, i : i + 1], v[:, :, i : i + 1], state) for i in range(15, LENGTH)]
    torch.testing.assert_close(torch.cat(outs, 2), full[flipped][:, :, 15:], atol=1e-5, rtol=1e-5)


def test_no_query_sees_its_future(qkv):
    kernel = build_attention("retrieval_heads", full_heads=(0,), window=WINDOW, num_global=SINKS)
    q, k, v = qkv
    changed_k, changed_v = k.clone(), v.clone()
    changed_k[:, :, 12:], changed_v[:, :, 12:] = 5.0, -5.0
    torch.testing.assert_close(kernel(q, changed_k, changed_v, causal=True)[:, :, :12],
                               kernel(q, k, v, causal=True)[:, :, :12])


def test_bad_heads_are_refused(qkv):
    q, k, v = qkv
    with pytest.raises(ConfigError, match="full_heads lists kv head 3, but the layer has kv heads 0..2"):
        build_attention("retrieval_heads", full_heads=(0, 3))(q, k, v, causal=True)
    with pytest.raises(ConfigError, match="distinct kv head indices"):
        build_attention("retrieval_heads", full_heads=(1, 1))
    with pytest.raises(ConfigError, match="causal"):
        build_attention("retrieval_heads").check(causal=False, position="rope", where="encoder")


def test_the_best_kv_heads_are_chosen_per_layer():
    scores = torch.tensor([[0.1, 0.9, 0.0], [0.5, 0.2, 0.8]])
    assert top_heads(scores, 1) == {0: [1]}
    assert top_heads(scores, 3) == {0: [1], 1: [0, 2]}
    with pytest.raises(ConfigError, match="choose 1 to 6 kv heads"):
        top_heads(scores, 7)


def test_the_needle_tokens_are_those_overlapping_the_key():
    text = "The key is 123. Remember 123."
    offsets = [(0, 3), (3, 7), (7, 10), (10, 12), (12, 14), (14, 15), (15, 24), (24, 26), (26, 28), (28, 29)]
    assert _answer_tokens(text, "123", offsets) == [3, 4, 7, 8]
