"""Attention kernels (one file per mechanism family) and the multi-head attention mixer.

``ATTENTION`` maps a name to a kernel class; ``build_attention(name, **options)`` makes one.
"""

from __future__ import annotations

import math
import typing
from typing import Any

import torch
from pydantic import TypeAdapter, ValidationError

from ..errors import ConfigError, brief
from .base import AttentionKernel, kernel_options
from .bias import ALiBi, ScoreBias, T5RelativeBias
from .block_sparse import BlockSparseAttention
from .chunked import ChunkedAttention
from .full import FullAttention
from .linear import LinearAttention, PerformerAttention
from .local import SlidingWindowAttention
from .low_rank import LinformerAttention, NystromAttention
from .multihead import CrossAttention, MultiHeadAttention
from .reference import ReferenceAttention
from .retrieval_heads import RetrievalHeadsAttention
from .window_linear import WindowLinearAttention

ATTENTION: dict[str, type[AttentionKernel]] = {
    "reference": ReferenceAttention,
    "full": FullAttention,
    "chunked": ChunkedAttention,
    "sliding_window": SlidingWindowAttention,
    "block_sparse": BlockSparseAttention,
    "linear": LinearAttention,
    "performer": PerformerAttention,
    "linformer": LinformerAttention,
    "nystrom": NystromAttention,
    "window_linear": WindowLinearAttention,
    "retrieval_heads": RetrievalHeadsAttention,
}


def build_attention(name: str, **options: Any) -> AttentionKernel:
    """Make the kernel ``name`` with its options; unknown names/options raise ConfigError."""
    if name not in ATTENTION:
        raise ConfigError(f"attention.name={name!r} is unknown; allowed: {', '.join(sorted(ATTENTION))}")
    refuse_unknown_options(name, options, ConfigError)
    return ATTENTION[name](**options)


def refuse_unknown_options(name: str, options: dict[str, Any], error: type[Exception]) -> None:
    """An option kernel ``name`` does not take (not one of its keyword-only parameters) raises ``error``."""
    allowed = kernel_options(ATTENTION[name])
    for key in options:
        if key not in allowed:
            raise error(f"option {key!r} is not accepted by attention {name!r}; "
                        f"allowed: {', '.join(allowed) or '(none)'}")


def check_kernel_options(name: str, options: dict[str, Any]) -> dict[str, Any]:
    """``options`` checked against kernel ``name``'s keyword-only parameters, coerced to their annotated
    types, then checked by the kernel itself (a ValueError naming the option; the config adds the key).

    The kernel is constructed on the meta device (no memory), so its own range checks run when the
    config loads: ``config check`` accepts exactly what training builds.
    """
    refuse_unknown_options(name, options, ValueError)
    kernel_cls = ATTENTION[name]
    hints = typing.get_type_hints(kernel_cls.__init__)
    coerced = {}
    for key, value in options.items():
        try:
            coerced[key] = TypeAdapter(hints.get(key, Any)).validate_python(value)
        except ValidationError as exc:
            raise ValueError(f"{key}={brief(value)}: {exc.errors()[0]['msg']}") from None
        if isinstance(coerced[key], float) and not math.isfinite(coerced[key]):
            raise ValueError(f"{key}={brief(value)} must be a finite number")
    try:
        with torch.device("meta"):
            kernel_cls(**coerced)
    except (ValueError, TypeError, RuntimeError, OverflowError) as exc:
        raise ValueError(str(exc).removeprefix(f"attention {name!r}: ")) from None
    return coerced


__all__ = [
    "ATTENTION", "build_attention", "check_kernel_options", "kernel_options", "AttentionKernel", "ScoreBias",
    "ALiBi", "T5RelativeBias",
    "MultiHeadAttention", "CrossAttention", "FullAttention", "ReferenceAttention", "ChunkedAttention",
    "SlidingWindowAttention", "BlockSparseAttention", "LinearAttention", "PerformerAttention", "LinformerAttention",
    "NystromAttention", "WindowLinearAttention", "RetrievalHeadsAttention",
]
