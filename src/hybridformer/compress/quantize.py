"""Quantizing a float model for CPU inference: dynamic int8 linears (see :mod:`hybridformer.quantized`)."""

from __future__ import annotations

from torch import nn

from ..config import ModelConfig, parse_config
from ..errors import ConfigError
from ..quantized import quantize_dynamic_int8


def quantize_model(model: nn.Module, config: ModelConfig) -> tuple[nn.Module, ModelConfig]:
    """Quantize ``model`` (float, CPU) and return it with the config to save beside it."""
    if config.quantization is not None:
        raise ConfigError(f"the model is already quantized ({config.quantization})")
    model = quantize_dynamic_int8(model)
    return model, parse_config(ModelConfig, {**config.model_dump(), "quantization": "dynamic_int8"})
