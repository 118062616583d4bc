"""Convolution mixers, one file per family: Conformer's module, lightweight and dynamic convolution, cgMLP,
LFM2's short convolution.

Each is a mixer (``forward(x, ctx)``) built on ``common.conv_window``: padded positions are zeroed
before every convolution, decoders convolve causally, and incremental decoding keeps the last
k − 1 inputs in a ``cache.ConvState``. See docs/conv.md.
"""

from .cgmlp import ConvGatedMLP, DepthwiseConvMerge
from .common import DepthwiseConv, conv_window, depthwise_conv
from .conformer import ConformerConvModule
from .dynamic import DynamicConv
from .lightweight import ConvBlock, LightweightConv
from .shortconv import ShortConv

__all__ = [
    "ConformerConvModule", "LightweightConv", "DynamicConv", "ConvBlock", "ConvGatedMLP", "DepthwiseConvMerge",
    "ShortConv", "DepthwiseConv", "conv_window", "depthwise_conv",
]
