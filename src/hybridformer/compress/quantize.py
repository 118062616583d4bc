"""Quantizing a float model for CPU inference: int8 (dynamic or weight-only), int4 or bf16 linears
(see :mod:`hybridformer.quantized`), dynamic int8 after SmoothQuant calibration when text is given."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from ..config import ModelConfig, parse_config
from ..errors import ConfigError
from ..quantized import quantize_linears
from .smooth import activation_peaks, smooth

# CLI scheme -> ModelConfig.quantization
SCHEMES = {"int8": "dynamic_int8", "int8-weight": "int8_weight", "int4": "int4", "bf16": "bf16"}


def quantize_model(model: nn.Module, config: ModelConfig, scheme: str = "int8", *,
                   calibration: Sequence | None = None, alpha: float = 0.5) -> tuple[nn.Module, ModelConfig]:
    """Quantize ``model`` (float, CPU) to ``scheme`` and return it with the config to save beside it.

    ``calibration`` (token batches, or ``(src, tgt)`` pairs) smooths the model for dynamic int8 first
    (SmoothQuant with migration strength ``alpha``; :mod:`~hybridformer.compress.smooth`)."""
    check_scheme(scheme, calibrated=calibration is not None, alpha=alpha)
    if config.quantization is not None:
        raise ConfigError(f"the model is already quantized ({config.quantization})")
    if calibration is not None:
        smooth(model, activation_peaks(model, calibration), alpha)
    # smoothing moved the activations' outliers into the weights: they keep 8 bits (quantized.Int8Linear.from_linear)
    options = {"weight_bits": 8} if calibration is not None else {}
    model = quantize_linears(model, SCHEMES[scheme], **options)
    return model, parse_config(ModelConfig, {**config.model_dump(), "quantization": SCHEMES[scheme]})


def check_scheme(scheme: str, *, calibrated: bool = False, alpha: float = 0.5) -> None:
    """Refuse an unknown scheme, or calibration for a scheme whose activations are not quantized."""
    if scheme not in SCHEMES:
        raise ConfigError(f"--scheme must be one of {', '.join(SCHEMES)}, got {scheme!r}")
    if calibrated and scheme != "int8":
        raise ConfigError(f"--calibrate applies to --scheme int8 (quantized activations), not {scheme}")
    if not 0.0 <= alpha <= 1.0:
        raise ConfigError(f"--alpha must be between 0 and 1, got {alpha}")
