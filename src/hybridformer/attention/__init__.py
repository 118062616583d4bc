"""Attention kernels (one file per mechanism family) and the multi-head attention mixer.

``ATTENTION`` maps a name to a kernel class; ``build_attention(name, **options)`` makes one.
"""

from __future__ import annotations

from typing import Any

from ..errors import ConfigError
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
}


def build_attention(name: str, **options: Any) -> AttentionKernel:
    """Make the kernel ``name`` with its options; unknown names/options raise ConfigError."""
    if name not in ATTENTION:
        raise ConfigError(f"attention.name={name!r} is unknown; allowed: {', '.join(sorted(ATTENTION))}")
    kernel_cls = ATTENTION[name]
    allowed = kernel_options(kernel_cls)
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        allowed_text = ", ".join(allowed) or "(none)"
        raise ConfigError(f"attention {name!r} does not take option(s) {', '.join(unknown)}; allowed: {allowed_text}")
    return kernel_cls(**options)


__all__ = [
    "ATTENTION", "build_attention", "kernel_options", "AttentionKernel", "ScoreBias", "ALiBi", "T5RelativeBias",
    "MultiHeadAttention", "CrossAttention", "FullAttention", "ReferenceAttention", "ChunkedAttention",
    "SlidingWindowAttention", "BlockSparseAttention", "LinearAttention", "PerformerAttention", "LinformerAttention",
    "NystromAttention", "WindowLinearAttention",
]
