"""Rule builders the encoder-decoder and encoder mappings share (BART, mBART, Marian, T5, BERT, RoBERTa)."""

from __future__ import annotations

from typing import Any

from ..rules import Rule
from .common import unsupported


def linear(ours: str, theirs: str | tuple[str, ...], rows: int, *, bias: bool = True) -> list[Rule]:
    """A linear layer; several HF linears of ``rows`` output rows each are fused along the output dimension."""
    parts = (theirs,) if isinstance(theirs, str) else theirs
    sizes = (rows,) * len(parts) if len(parts) > 1 else None
    rules = [Rule(f"{ours}.weight", tuple(f"{p}.weight" for p in parts), sizes)]
    if bias:
        rules.append(Rule(f"{ours}.bias", tuple(f"{p}.bias" for p in parts), sizes))
    return rules


def norm(ours: str, theirs: str, *, bias: bool = True) -> list[Rule]:
    """A LayerNorm (weight, bias) or an RMSNorm (weight only)."""
    rules = [Rule(f"{ours}.weight", (f"{theirs}.weight",))]
    return rules + ([Rule(f"{ours}.bias", (f"{theirs}.bias",))] if bias else [])


ACTIVATIONS = {"gelu": "gelu", "relu": "relu", "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh",
               "swish": "silu", "silu": "silu"}
HF_ACTIVATIONS = {"gelu": "gelu", "relu": "relu", "gelu_tanh": "gelu_new", "silu": "swish"}


def activation(hf: dict[str, Any], key: str) -> str:
    """Our name of the HF activation in ``hf[key]``; an unsupported one is a ConfigError naming the field."""
    value = hf.get(key, "gelu")
    if value not in ACTIVATIONS:
        raise unsupported(key, value, f"supported: {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[value]


def same(hf: dict[str, Any], first: str, second: str) -> Any:
    """``hf[first]``, refusing a different ``hf[second]`` (both stacks share one setting here)."""
    if hf.get(second, hf[first]) != hf[first]:
        raise unsupported(second, hf[second], f"it must equal {first}={hf[first]!r}: both stacks share it here")
    return hf[first]
