"""Layers assembled from residual sublayers around mixers and feed-forward networks."""

from .layers import LAYERS, LayerParts
from .residual import Layer, MixerContext, Residual

__all__ = ["LAYERS", "LayerParts", "Layer", "MixerContext", "Residual"]
