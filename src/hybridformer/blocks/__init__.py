"""Layers assembled from residual sublayers around mixers and feed-forward networks."""

from ..context import MixerContext
from .layers import LAYERS, LayerParts
from .residual import Layer, Residual

__all__ = ["LAYERS", "LayerParts", "Layer", "MixerContext", "Residual"]
