"""Hugging Face architectures by ``model_type``: a plain dict of small per-architecture mappings."""

from __future__ import annotations

from .common import Architecture
from .llama import LLAMA, MISTRAL, QWEN2

ARCHITECTURES: dict[str, Architecture] = {
    "llama": LLAMA,
    "mistral": MISTRAL,
    "qwen2": QWEN2,
}

__all__ = ["ARCHITECTURES", "Architecture"]
