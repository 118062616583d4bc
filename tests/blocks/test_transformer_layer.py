"""The `transformer` layer has standard semantics: it matches torch.nn's reference layers."""

import torch
from torch import nn

from hybridformer.blocks import LAYERS, LayerParts, MixerContext

D, HEADS, FFN = 16, 4, 32


def _parts(causal: bool) -> LayerParts:
    return LayerParts(d_model=D, heads=HEADS, kv_heads=HEADS, ffn_dim=FFN, activation="relu", prenorm=False,
                      dropout=0.0, causal=causal)


def _copy_ffn_and_norms(ours, theirs, ffn_index, norms):
    ffn = ours.sublayers[ffn_index].body
    ffn.linear1.load_state_dict(theirs.linear1.state_dict())
    ffn.linear2.load_state_dict(theirs.linear2.state_dict())
    for sublayer, norm in zip(ours.sublayers, norms, strict=True):
        sublayer.norm.load_state_dict(norm.state_dict())


def test_post_norm_encoder_layer_matches_torch():
    theirs = nn.TransformerEncoderLayer(D, HEADS, FFN, dropout=0.0, batch_first=True).eval()
    ours = LAYERS["transformer"](_parts(causal=False), False).eval()
    attn = ours.sublayers[0].body
    attn.qkv_proj.weight.data.copy_(theirs.self_attn.in_proj_weight)
    attn.qkv_proj.bias.data.copy_(theirs.self_attn.in_proj_bias)
    attn.out_proj.load_state_dict(theirs.self_attn.out_proj.state_dict())
    _copy_ffn_and_norms(ours, theirs, 1, [theirs.norm1, theirs.norm2])

    x = torch.randn(2, 7, D)
    pad = torch.zeros(2, 7, dtype=torch.bool)
    pad[1, 5:] = True
    expected = theirs(x, src_key_padding_mask=pad)
    got = ours(x, MixerContext(padding_mask=pad, causal=False, positions=torch.arange(7)))
    torch.testing.assert_close(got[~pad], expected[~pad], atol=1e-5, rtol=1e-5)


def test_post_norm_decoder_layer_matches_torch():
    theirs = nn.TransformerDecoderLayer(D, HEADS, FFN, dropout=0.0, batch_first=True).eval()
    ours = LAYERS["transformer"](_parts(causal=True), True).eval()
    self_attn, cross = ours.sublayers[0].body, ours.sublayers[1].body
    self_attn.qkv_proj.weight.data.copy_(theirs.self_attn.in_proj_weight)
    self_attn.qkv_proj.bias.data.copy_(theirs.self_attn.in_proj_bias)
    self_attn.out_proj.load_state_dict(theirs.self_attn.out_proj.state_dict())
    w, b = theirs.multihead_attn.in_proj_weight, theirs.multihead_attn.in_proj_bias
    cross.q_proj.weight.data.copy_(w[:D])
    cross.q_proj.bias.data.copy_(b[:D])
    cross.kv_proj.weight.data.copy_(w[D:])
    cross.kv_proj.bias.data.copy_(b[D:])
    cross.out_proj.load_state_dict(theirs.multihead_attn.out_proj.state_dict())
    _copy_ffn_and_norms(ours, theirs, 2, [theirs.norm1, theirs.norm2, theirs.norm3])

    x, memory = torch.randn(2, 6, D), torch.randn(2, 8, D)
    memory_pad = torch.zeros(2, 8, dtype=torch.bool)
    memory_pad[0, 6:] = True
    causal = nn.Transformer.generate_square_subsequent_mask(6)
    expected = theirs(x, memory, tgt_mask=causal, tgt_is_causal=True, memory_key_padding_mask=memory_pad)
    ctx = MixerContext(padding_mask=None, causal=True, positions=torch.arange(6), memory=memory,
                       memory_padding_mask=memory_pad)
    torch.testing.assert_close(ours(x, ctx), expected, atol=1e-5, rtol=1e-5)
