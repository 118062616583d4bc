"""Layer types by name: each is one short builder composing residual sublayers from LayerParts."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from ..attention import CrossAttention, MultiHeadAttention, build_attention
from ..ffn import FeedForward
from ..norm import build_norm
from .residual import Layer, Residual


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
    dropout: float = 0.0
    residual_scheme: str = "standard"  # standard | deepnet | rezero
    alpha: float = 1.0  # DeepNet skip weight (post-norm)
    attention: str = "full"
    attention_options: dict[str, Any] = field(default_factory=dict)
    cross_attention: str = "full"
    cross_attention_options: dict[str, Any] = field(default_factory=dict)
    conv_kernel_size: int = 15
    causal: bool = False

    def norm_layer(self) -> nn.Module:
        return build_norm(self.norm, self.d_model)

    def self_attention(self) -> MultiHeadAttention:
        kernel = build_attention(self.attention, **self.attention_options)
        return MultiHeadAttention(self.d_model, self.heads, self.kv_heads, kernel)

    def cross_attention_mixer(self) -> CrossAttention:
        kernel = build_attention(self.cross_attention, **self.cross_attention_options)
        return CrossAttention(self.d_model, self.heads, self.kv_heads, kernel)

    def ffn(self) -> FeedForward:
        return FeedForward(self.d_model, self.ffn_dim, self.activation, self.dropout)

    def residual(self, body: nn.Module, scale: float = 1.0) -> Residual:
        rezero = self.residual_scheme == "rezero"
        return Residual(
            body, None if rezero else self.norm_layer(), prenorm=self.prenorm, dropout=self.dropout,
            scale=scale, alpha=self.alpha, rezero=rezero,
        )


def transformer_layer(parts: LayerParts, cross: bool) -> Layer:
    """Vaswani et al. (2017): self-attention, [cross-attention], feed-forward."""
    sublayers = [parts.residual(parts.self_attention())]
    if cross:
        sublayers.append(parts.residual(parts.cross_attention_mixer()))
    sublayers.append(parts.residual(parts.ffn()))
    return Layer(sublayers)


LAYERS: dict[str, Callable[[LayerParts, bool], Layer]] = {
    "transformer": transformer_layer,
}
