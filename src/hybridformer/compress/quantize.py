"""Quantizing a float model for CPU inference: int8 (dynamic or weight-only), int4 or bf16 linears
(see :mod:`hybridformer.quantized`)."""

from __future__ import annotations

from torch import nn

from ..config import ModelConfig, parse_config
from ..errors import ConfigError
from ..quantized import quantize_linears

# CLI scheme -> ModelConfig.quantization
SCHEMES = {"int8": "dynamic_int8", "int8-weight": "int8_weight", "int4": "int4", "bf16": "bf16"}


def quantize_model(model: nn.Module, config: ModelConfig, scheme: str = "int8") -> tuple[nn.Module, ModelConfig]:
    """Quantize ``model`` (float, CPU) to ``scheme`` and return it with the config to save beside it."""
    if scheme not in SCHEMES:
        raise ConfigError(f"--scheme must be one of {', '.join(SCHEMES)}, got {scheme!r}")
    if config.quantization is not None:
        raise ConfigError(f"the model is already quantized ({config.quantization})")
    model = quantize_linears(model, SCHEMES[scheme])
    return model, parse_config(ModelConfig, {**config.model_dump(), "quantization": SCHEMES[scheme]})
