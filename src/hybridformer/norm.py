"""Normalization layers by name."""

from __future__ import annotations

from torch import nn

NORMS = {"layernorm": nn.LayerNorm, "rmsnorm": nn.RMSNorm}


def build_norm(kind: str, d_model: int, eps: float = 1e-5) -> nn.Module:
    return NORMS[kind](d_model, eps=eps)
