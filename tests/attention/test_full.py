"""`full` (SDPA) against the dense `reference` oracle, with every mask and bias combination."""

import pytest
import torch

from hybridformer.attention import ALiBi, T5RelativeBias, build_attention


def _qkv(batch=2, heads=4, kv_heads=4, q_len=9, k_len=9, dim=8):
    return (torch.randn(batch, heads, q_len, dim), torch.randn(batch, kv_heads, k_len, dim),
            torch.randn(batch, kv_heads, k_len, dim))


def _bias(kind, heads, q_len, k_len):
    if kind is None:
        return None
    module = ALiBi(heads) if kind == "alibi" else T5RelativeBias(heads, num_buckets=8, max_distance=16)
    if kind == "t5":
        torch.nn.init.normal_(module.table.weight)
    offset = k_len - q_len
    return module(torch.arange(offset, offset + q_len), torch.arange(k_len))


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("padded", [False, True])
@pytest.mark.parametrize("bias_kind", [None, "alibi", "t5"])
@pytest.mark.parametrize("kv_heads", [4, 2, 1])
def test_full_matches_reference(causal, padded, bias_kind, kv_heads):
    q, k, v = _qkv(kv_heads=kv_heads)
    mask = None
    if padded:
        mask = torch.zeros(2, 9, dtype=torch.bool)
        mask[1, 6:] = True
    bias = _bias(bias_kind, 4, 9, 9)
    ref = build_attention("reference")(q, k, v, causal=causal, key_padding_mask=mask, bias=bias)
    out = build_attention("full", chunk_size=4)(q, k, v, causal=causal, key_padding_mask=mask, bias=bias)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("bias_kind", [None, "alibi"])
def test_full_shorter_query_is_aligned_to_the_end(bias_kind):
    """With q_len < k_len (decoding a chunk after a cache) causality is bottom-right aligned."""
    q, k, v = _qkv(q_len=3, k_len=7)
    bias = _bias(bias_kind, 4, 3, 7)
    ref = build_attention("reference")(q, k, v, causal=True, bias=bias)
    out = build_attention("full")(q, k, v, causal=True, bias=bias)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    # the last query sees every key: same as non-causal attention for that row
    last = build_attention("reference")(q[:, :, -1:], k, v, causal=False, bias=bias and bias.with_keys(bias.k_pos))
    if bias is None:
        torch.testing.assert_close(out[:, :, -1:], last, atol=1e-5, rtol=1e-5)


def test_bias_gradients_flow_through_full():
    q, k, v = _qkv()
    module = T5RelativeBias(4, num_buckets=8, max_distance=16)
    bias = module(torch.arange(9), torch.arange(9))
    build_attention("full")(q, k, v, causal=True, bias=bias).sum().backward()
    grad_full = module.table.weight.grad.clone()
    module.table.weight.grad = None
    build_attention("reference")(q, k, v, causal=True, bias=bias).sum().backward()
    torch.testing.assert_close(grad_full, module.table.weight.grad, atol=1e-4, rtol=1e-4)


def test_t5_buckets_are_exact_near_and_logarithmic_far():
    bias = T5RelativeBias(2, num_buckets=32, max_distance=128, bidirectional=True)
    rel = torch.tensor([0, 1, -1, 7, -7, 8, 50, 1000, -1000])
    buckets = bias.bucket(rel).tolist()
    assert buckets[:5] == [0, 17, 1, 23, 7]  # exact below 8; positive offsets live in the upper half
    assert buckets[7] == 31 and buckets[8] == 15  # clamp at the last bucket of each half
    assert buckets[6] == 16 + 8 + 5  # 8 + floor(log(50/8) / log(128/8) * 8), as in T5
