"""Layer types by name: each is one short builder composing residual sublayers from LayerParts."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from ..attention import CrossAttention, MultiHeadAttention, build_attention
from ..conv import (
    ConformerConvModule,
    ConvBlock,
    ConvGatedMLP,
    DepthwiseConvMerge,
    DynamicConv,
    LightweightConv,
    ShortConv,
)
from ..ffn import FeedForward
from ..norm import build_norm
from ..ssm import Mamba2
from .lsra import ChannelSlice
from .residual import ConcatMerge, Layer, Parallel, Residual, SumMerge, WeightedMerge


@dataclass
class LayerParts:
    """Plain-argument factory for the pieces layers are made of (config stops before this)."""

    d_model: int
    heads: int
    kv_heads: int
    ffn_dim: int
    activation: str = "relu"
    norm: str = "layernorm"
    prenorm: bool = True
    sandwich: bool = False  # pre-norm plus a norm on each branch's output (Gemma)
    qk_norm: bool = False  # a norm on each head's queries and keys (Qwen3, Gemma 3)
    dropout: float = 0.0
    residual_scheme: str = "standard"  # standard | deepnet | rezero
    alpha: float = 1.0  # DeepNet skip weight (post-norm)
    residual_multiplier: float = 1.0  # every branch scaled by it (Granite)
    attention: str = "full"
    attention_options: dict[str, Any] = field(default_factory=dict)
    cross_attention: str = "full"
    cross_attention_options: dict[str, Any] = field(default_factory=dict)
    conv_kernel_size: int = 15
    conv_heads: int = 8  # lightweight/dynamic convolution: heads sharing one kernel
    conv_weight_dropout: float = 0.0
    conv_lsra_split: float = 0.5  # LSRA: share of channels given to attention
    conv_lsra_conv: str = "lightweight"  # LSRA convolution branch: lightweight | dynamic
    conv_merge: str = "concat"  # Branchformer branch merge: concat | learned
    conv_merge_kernel_size: int = 3  # E-Branchformer depthwise merge
    conv_cgmlp_dim: int | None = None  # cgMLP hidden width (None = ffn_dim)
    conv_short_kernel_size: int = 3  # shortconv (LFM2)
    ssm_state_size: int = 64  # mamba2: see config.SSMConfig
    ssm_expand: int = 2
    ssm_head_dim: int = 64
    ssm_groups: int = 1
    ssm_conv_kernel_size: int = 4
    ssm_chunk_size: int = 64
    ssm_bias: bool = False
    ssm_conv_bias: bool = True
    ssm_inner: int | None = None
    ssm_output_norm: str = "gated"
    causal: bool = False
    head_dim: int | None = None  # None = d_model // heads
    norm_eps: float = 1e-5
    attention_bias: bool = True
    qkv_bias: bool | None = None  # None = attention_bias
    ffn_bias: bool = True
    score_scale: float | None = None  # attention score scale; None = 1/√head_dim (T5: 1)

    def norm_layer(self) -> nn.Module:
        return build_norm(self.norm, self.d_model, self.norm_eps)

    def self_attention(self, width: int | None = None) -> MultiHeadAttention:
        kernel = build_attention(self.attention, **self.attention_options)
        head_dim = None if width else self.head_dim
        qk_norm = None
        if self.qk_norm:
            qk_norm = [build_norm(self.norm, head_dim or self.d_model // self.heads, self.norm_eps) for _ in "qk"]
        return MultiHeadAttention(width or self.d_model, self.heads, self.kv_heads, kernel, bias=self.attention_bias,
                                  qkv_bias=self.qkv_bias, head_dim=head_dim, qk_norm=qk_norm,
                                  ).set_score_scale(self.score_scale)

    def cross_attention_mixer(self) -> CrossAttention:
        kernel = build_attention(self.cross_attention, **self.cross_attention_options)
        return CrossAttention(self.d_model, self.heads, self.kv_heads, kernel, bias=self.attention_bias,
                              qkv_bias=self.qkv_bias, head_dim=self.head_dim).set_score_scale(self.score_scale)

    def ffn(self) -> FeedForward:
        return FeedForward(self.d_model, self.ffn_dim, self.activation, self.dropout, bias=self.ffn_bias)

    def residual(self, body: nn.Module, scale: float = 1.0) -> Residual:
        rezero = self.residual_scheme == "rezero"
        return Residual(
            body, None if rezero else self.norm_layer(), prenorm=self.prenorm, dropout=self.dropout,
            scale=scale * self.residual_multiplier, alpha=self.alpha, rezero=rezero,
            post_norm=self.norm_layer() if self.sandwich else None,
        )

    def cross_sublayers(self, cross: bool) -> list[Residual]:
        """The cross-attention sublayer of a decoder layer (none in encoders and decoder-only LMs)."""
        return [self.residual(self.cross_attention_mixer())] if cross else []

    def layer_final_norm(self) -> nn.Module | None:
        """The per-layer output norm of Conformer / E-Branchformer (none with ReZero, which has no norms)."""
        return None if self.residual_scheme == "rezero" else self.norm_layer()

    def conv_module(self) -> ConformerConvModule:
        return ConformerConvModule(self.d_model, self.conv_kernel_size, norm=self.norm, dropout=self.dropout)

    def light_conv(self, width: int | None = None) -> ConvBlock:
        width = width or self.d_model
        conv = LightweightConv(width, self.conv_kernel_size, self.conv_heads, weight_dropout=self.conv_weight_dropout)
        return ConvBlock(width, conv, dropout=self.dropout)

    def dynamic_conv(self, width: int | None = None) -> ConvBlock:
        width = width or self.d_model
        conv = DynamicConv(width, self.conv_kernel_size, self.conv_heads, weight_dropout=self.conv_weight_dropout)
        return ConvBlock(width, conv, dropout=self.dropout)

    def cgmlp(self) -> ConvGatedMLP:
        hidden = self.conv_cgmlp_dim or self.ffn_dim
        return ConvGatedMLP(self.d_model, hidden, self.conv_kernel_size, norm=self.norm, dropout=self.dropout)

    def short_conv(self) -> ShortConv:
        return ShortConv(self.d_model, self.conv_short_kernel_size)

    def mamba2(self) -> Mamba2:
        return Mamba2(self.d_model, state_size=self.ssm_state_size, expand=self.ssm_expand,
                      head_dim=self.ssm_head_dim, groups=self.ssm_groups, conv_kernel_size=self.ssm_conv_kernel_size,
                      chunk_size=self.ssm_chunk_size, eps=self.norm_eps, bias=self.ssm_bias,
                      conv_bias=self.ssm_conv_bias, inner=self.ssm_inner, output_norm=self.ssm_output_norm)

    def branch_merge(self, branches: int = 2) -> nn.Module:
        """Branchformer's merge: concat + projection, or learned weights."""
        if self.conv_merge == "learned":
            return WeightedMerge(branches)
        return ConcatMerge(nn.Linear(branches * self.d_model, self.d_model))

    def depthwise_merge(self, branches: int = 2) -> DepthwiseConvMerge:
        return DepthwiseConvMerge(self.d_model, branches, self.conv_merge_kernel_size)

    def lsra(self) -> Parallel:
        """LSRA: attention on the first ``conv_lsra_split`` of the channels, convolution on the rest."""
        split = round(self.d_model * self.conv_lsra_split)
        conv = self.dynamic_conv if self.conv_lsra_conv == "dynamic" else self.light_conv
        attention = ChannelSlice(self.self_attention(split), 0, split, head_dim=split // self.heads)
        return Parallel([attention, ChannelSlice(conv(self.d_model - split), split, self.d_model)], ConcatMerge())


def transformer_layer(parts: LayerParts, cross: bool) -> Layer:
    """Vaswani et al. (2017): self-attention, [cross-attention], feed-forward."""
    sublayers = [parts.residual(parts.self_attention())]
    if cross:
        sublayers.append(parts.residual(parts.cross_attention_mixer()))
    sublayers.append(parts.residual(parts.ffn()))
    return Layer(sublayers)


def conformer_layer(parts: LayerParts, cross: bool) -> Layer:
    """Gulati et al. (2020): ½·FFN, self-attention, [cross-attention], conv module, ½·FFN, norm (macaron)."""
    return Layer([
        parts.residual(parts.ffn(), 0.5), parts.residual(parts.self_attention()), *parts.cross_sublayers(cross),
        parts.residual(parts.conv_module()), parts.residual(parts.ffn(), 0.5),
    ], parts.layer_final_norm())


def lsra_layer(parts: LayerParts, cross: bool) -> Layer:
    """Lite Transformer (Wu et al., 2020): long-short range attention, [cross-attention], feed-forward."""
    return Layer([parts.residual(parts.lsra()), *parts.cross_sublayers(cross), parts.residual(parts.ffn())])


def branchformer_layer(parts: LayerParts, cross: bool) -> Layer:
    """Peng et al. (2022): self-attention ∥ cgMLP, merged; [cross-attention]. No FFN, as in the paper."""
    branches = Parallel([parts.self_attention(), parts.cgmlp()], parts.branch_merge())
    return Layer([parts.residual(branches), *parts.cross_sublayers(cross)])


def ebranchformer_layer(parts: LayerParts, cross: bool) -> Layer:
    """Kim et al. (2022): ½·FFN, self-attention ∥ cgMLP with a depthwise-conv merge, [cross], ½·FFN, norm."""
    branches = Parallel([parts.self_attention(), parts.cgmlp()], parts.depthwise_merge())
    return Layer([
        parts.residual(parts.ffn(), 0.5), parts.residual(branches), *parts.cross_sublayers(cross),
        parts.residual(parts.ffn(), 0.5),
    ], parts.layer_final_norm())


def lightconv_layer(parts: LayerParts, cross: bool) -> Layer:
    """Wu et al. (2019): lightweight convolution in place of self-attention, [cross-attention], FFN."""
    return Layer([parts.residual(parts.light_conv()), *parts.cross_sublayers(cross), parts.residual(parts.ffn())])


def dynamicconv_layer(parts: LayerParts, cross: bool) -> Layer:
    """Wu et al. (2019): dynamic convolution in place of self-attention, [cross-attention], FFN."""
    return Layer([parts.residual(parts.dynamic_conv()), *parts.cross_sublayers(cross), parts.residual(parts.ffn())])


def shortconv_layer(parts: LayerParts, cross: bool) -> Layer:
    """LFM2 (Liquid AI, 2025): double-gated short convolution in place of self-attention, [cross], FFN."""
    return Layer([parts.residual(parts.short_conv()), *parts.cross_sublayers(cross), parts.residual(parts.ffn())])


def mamba2_layer(parts: LayerParts, cross: bool) -> Layer:
    """Mamba-2 (Dao & Gu, 2024) in place of self-attention, [cross], FFN — the layer of Granite-4.0-H's hybrids."""
    return Layer([parts.residual(parts.mamba2()), *parts.cross_sublayers(cross), parts.residual(parts.ffn())])


def parallel_mamba2_layer(parts: LayerParts, cross: bool) -> Layer:
    """Falcon-H1 (TII, 2025): self-attention and Mamba-2 side by side on one normed input, their outputs
    added, [cross], FFN. Decoding keeps both memories: the attention's KV cache and Mamba-2's conv and SSM state."""
    branches = Parallel([parts.self_attention(), parts.mamba2()], SumMerge())
    return Layer([parts.residual(branches), *parts.cross_sublayers(cross), parts.residual(parts.ffn())])


LAYERS: dict[str, Callable[[LayerParts, bool], Layer]] = {
    "transformer": transformer_layer,
    "conformer": conformer_layer,
    "lsra": lsra_layer,
    "branchformer": branchformer_layer,
    "ebranchformer": ebranchformer_layer,
    "lightconv": lightconv_layer,
    "dynamicconv": dynamicconv_layer,
    "shortconv": shortconv_layer,
    "mamba2": mamba2_layer,
    "parallel_mamba2": parallel_mamba2_layer,
}
