"""Convolution mixers against hand-written oracles, padding, causality and streaming (conv-state cache)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from hybridformer.blocks import MixerContext
from hybridformer.blocks.lsra import narrow_rotation
from hybridformer.cache import DecodingCache
from hybridformer.conv import (
    ConformerConvModule,
    ConvBlock,
    ConvGatedMLP,
    DepthwiseConv,
    DepthwiseConvMerge,
    DynamicConv,
    LightweightConv,
    ShortConv,
)
from hybridformer.position import RotaryEmbedding


def ctx(length: int, *, causal: bool, padding_mask=None, cache=None) -> MixerContext:
    return MixerContext(padding_mask=padding_mask, causal=causal, positions=torch.arange(length), cache=cache)


def mixers() -> dict[str, torch.nn.Module]:
    return {
        "depthwise": DepthwiseConv(8, 4),
        "conformer": ConformerConvModule(8, 5),
        "lightweight": LightweightConv(8, 3, 2),
        "dynamic": DynamicConv(8, 4, 4),
        "lightconv_block": ConvBlock(8, LightweightConv(8, 3, 2)),
        "cgmlp": ConvGatedMLP(8, 12, 3),
        "shortconv": ShortConv(8, 3),
    }


def hand_lightweight(x, raw_weight, heads, causal):
    """Loop oracle: out[t, c] = Σ_j softmax(W[head(c)])[j] · x[t - left + j, c] (zero outside)."""
    batch, length, channels = x.shape
    k = raw_weight.shape[1]
    weight = torch.softmax(raw_weight, dim=-1)
    left = k - 1 if causal else (k - 1) // 2
    out = torch.zeros_like(x)
    for t in range(length):
        for c in range(channels):
            h = c // (channels // heads)
            for j in range(k):
                s = t - left + j
                if 0 <= s < length:
                    out[:, t, c] += weight[h, j] * x[:, s, c]
    return out


@pytest.mark.parametrize("causal", [False, True])
def test_lightweight_equals_hand_written_depthwise_conv(causal):
    conv = LightweightConv(6, 3, 2)
    x = torch.randn(2, 5, 6)
    expected = hand_lightweight(x, conv.weight.detach(), 2, causal)
    torch.testing.assert_close(conv(x, ctx(5, causal=causal)), expected)


def test_lightweight_kernel_is_softmax_normalised_and_head_shared():
    conv = LightweightConv(6, 3, 2)
    kernel = conv.kernel()
    torch.testing.assert_close(kernel.sum(-1), torch.ones(6))
    assert torch.equal(kernel[0], kernel[2]) and torch.equal(kernel[3], kernel[5])
    assert not torch.equal(kernel[0], kernel[3])


@pytest.mark.parametrize("causal", [False, True])
def test_dynamic_conv_equals_per_position_loop(causal):
    conv = DynamicConv(4, 3, 2)
    x = torch.randn(1, 6, 4)
    out = conv(x, ctx(6, causal=causal))
    left = 2 if causal else 1
    kernels = torch.softmax(conv.kernel_proj(x).view(1, 6, 2, 3), dim=-1)
    padded = F.pad(x, (0, 0, left, 2 - left))
    for t in range(6):
        for c in range(4):
            expected = (kernels[0, t, c // 2] * padded[0, t : t + 3, c]).sum()
            torch.testing.assert_close(out[0, t, c], expected)


def test_conformer_module_equals_torch_conv1d_pipeline():
    module = ConformerConvModule(6, 5).eval()
    x = torch.randn(2, 7, 6)
    conv = torch.nn.Conv1d(6, 6, 5, padding=2, groups=6)
    conv.weight.data = module.depthwise.weight.data[:, None]
    conv.bias.data = module.depthwise.bias.data
    h = F.glu(module.pointwise_in(x), dim=-1)
    h = conv(h.transpose(1, 2)).transpose(1, 2)
    expected = module.pointwise_out(F.silu(module.norm(h)))
    torch.testing.assert_close(module(x, ctx(7, causal=False)), expected)


def test_shortconv_equals_lfm2_formula_with_torch_conv1d():
    """LFM2: [B; C; x] = in_proj(h); y = out_proj(C ⊙ causal_conv(B ⊙ x)), conv = nn.Conv1d(groups=d, padding=k-1)."""
    module = ShortConv(6, 3).eval()
    h = torch.randn(2, 5, 6)
    conv = torch.nn.Conv1d(6, 6, 3, groups=6, padding=2, bias=False)
    conv.weight.data = module.conv.weight.data[:, None]
    b, c, x = module.in_proj(h).chunk(3, dim=-1)
    mixed = conv((b * x).transpose(1, 2))[..., :5].transpose(1, 2)
    expected = module.out_proj(c * mixed)
    torch.testing.assert_close(module(h, ctx(5, causal=True)), expected)


def test_depthwise_merge_sees_neighbours():
    merge = DepthwiseConvMerge(4, 2, 3)
    ys = [torch.randn(1, 5, 4), torch.randn(1, 5, 4)]
    joined = torch.cat(ys, -1)
    expected = merge.proj(joined + merge.conv(joined, ctx(5, causal=False)))
    torch.testing.assert_close(merge(ys, ctx(5, causal=False)), expected)


@pytest.mark.parametrize("name", list(mixers()))
def test_causal_mixer_never_sees_the_future(name):
    mixer = mixers()[name]
    x = torch.randn(2, 7, 8, requires_grad=True)
    out = mixer(x, ctx(7, causal=True))
    (out[:, 3] * torch.randn(8)).sum().backward()
    assert x.grad[:, 4:].abs().max() == 0
    assert x.grad[:, :4].abs().max() > 0


@pytest.mark.parametrize("name", list(mixers()))
@pytest.mark.parametrize("causal", [False, True])
def test_padding_never_leaks_into_real_positions(name, causal):
    mixer = mixers()[name].eval()
    x = torch.randn(1, 4, 8)
    alone = mixer(x, ctx(4, causal=causal))
    padded = torch.cat([x, 100 * torch.randn(1, 3, 8)], dim=1)
    mask = torch.tensor([[False] * 4 + [True] * 3])
    torch.testing.assert_close(mixer(padded, ctx(7, causal=causal, padding_mask=mask))[:, :4], alone)


@pytest.mark.parametrize("name", list(mixers()))
def test_streaming_through_conv_state_equals_full_causal(name):
    mixer = mixers()[name].eval()
    x = torch.randn(3, 7, 8)
    full = mixer(x, ctx(7, causal=True))
    cache = DecodingCache()
    pieces = [mixer(x[:, :3], ctx(3, causal=True, cache=cache))]  # a prompt, then one token at a time
    pieces += [mixer(x[:, t : t + 1], ctx(1, causal=True, cache=cache)) for t in range(3, 7)]
    torch.testing.assert_close(torch.cat(pieces, 1), full)
    # reordering the cache (beam search) keeps each row's history with it
    cache.reorder(torch.tensor([2, 0, 1]))
    nxt = torch.randn(3, 1, 8)
    stepped = mixer(nxt, ctx(1, causal=True, cache=cache))
    full_next = mixer(torch.cat([x[[2, 0, 1]], nxt], 1), ctx(8, causal=True))[:, -1:]
    torch.testing.assert_close(stepped, full_next)


def test_narrowed_rotation_is_rope_of_the_narrow_head():
    positions = torch.arange(6)
    wide = RotaryEmbedding(16)(positions)
    narrow = narrow_rotation(wide, 8)
    expected = RotaryEmbedding(8)(positions)
    torch.testing.assert_close(narrow.cos, expected.cos)
    torch.testing.assert_close(narrow.sin, expected.sin)
