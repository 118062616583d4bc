"""Weight plans: how the tensors of a Hugging Face checkpoint become this toolkit's, and back.

A plan is a list of :class:`Entry`: one of our parameter names and the Hugging Face tensors it is
made of, concatenated along dim 0 (q, k, v into one fused projection; T5's two gated input
projections into one). Conversion reads each entry's tensors one at a time and export splits them
again, so HF -> hybridformer -> HF gives back identical tensors. The plans of the seq2seq and encoder
architectures (BART, mBART, Marian, T5, BERT, RoBERTa) are built from a :class:`ModelConfig` alone.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ...errors import CheckpointError, ConfigError


@dataclass(frozen=True)
class Entry:
    """``ours`` = cat(``hf``, dim=0). ``squeeze``: the HF tensor has a leading axis of 1 (BART's
    ``final_logits_bias``). ``alternatives``: other names the single HF tensor is saved under."""

    ours: str
    hf: tuple[str, ...]
    squeeze: bool = False
    alternatives: tuple[str, ...] = ()


def linear(ours: str, hf: str | tuple[str, ...], *, bias: bool = True) -> list[Entry]:
    """A linear layer; a tuple of HF linears is fused along the output dimension."""
    parts = (hf,) if isinstance(hf, str) else hf
    entries = [Entry(f"{ours}.weight", tuple(f"{p}.weight" for p in parts))]
    if bias:
        entries.append(Entry(f"{ours}.bias", tuple(f"{p}.bias" for p in parts)))
    return entries


def norm(ours: str, hf: str, *, bias: bool = True) -> list[Entry]:
    """A LayerNorm (weight, bias) or an RMSNorm (weight only)."""
    return [Entry(f"{ours}.weight", (f"{hf}.weight",))] + ([Entry(f"{ours}.bias", (f"{hf}.bias",))] if bias else [])


def convert_tensors(plan: list[Entry], read: Callable[[str], Tensor], names: Collection[str]) -> Iterator[
        tuple[str, Tensor]]:
    """Our (name, tensor) pairs, reading the HF tensors of one entry at a time (``names``: what the file holds)."""
    for entry in plan:
        parts = []
        for name in entry.hf:
            found = next((n for n in (name, *entry.alternatives) if n in names), None)
            if found is None:
                raise CheckpointError(f"the checkpoint has no tensor {name!r} (needed for {entry.ours})")
            parts.append(read(found))
        tensor = parts[0] if len(parts) == 1 else torch.cat(parts, dim=0)
        yield entry.ours, tensor.squeeze(0) if entry.squeeze else tensor


def export_tensors(plan: list[Entry], state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """The HF tensors of a plan from our state dict; fused tensors split in equal parts."""
    out: dict[str, Tensor] = {}
    for entry in plan:
        tensor = state[entry.ours]
        pieces = tensor.chunk(len(entry.hf), dim=0) if len(entry.hf) > 1 else (tensor,)
        for name, piece in zip(entry.hf, pieces, strict=True):
            if name not in out:
                out[name] = (piece.unsqueeze(0) if entry.squeeze else piece).contiguous()
    return out


# ----------------------------------------------------------------------------- config fields

ACTIVATIONS = {"gelu": "gelu", "relu": "relu", "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh",
               "swish": "silu", "silu": "silu"}


def activation(hf: Mapping[str, Any], key: str) -> str:
    """Our name of the HF activation in ``hf[key]``; an unsupported one is a ConfigError naming the field."""
    value = hf.get(key, "gelu")
    if value not in ACTIVATIONS:
        raise ConfigError(f"config.json: {key}={value!r} is not supported; supported: {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[value]


def same(hf: Mapping[str, Any], first: str, second: str) -> Any:
    """``hf[first]``, refusing a different ``hf[second]`` (both stacks of a model share one setting here)."""
    if hf.get(second, hf[first]) != hf[first]:
        raise ConfigError(f"config.json: {second}={hf[second]!r} differs from {first}={hf[first]!r}; "
                          "both stacks must share it to convert")
    return hf[first]


def refuse(hf: Mapping[str, Any], key: str, allowed: Collection[Any], why: str) -> None:
    """A computation-changing field whose value this converter does not reproduce: ConfigError naming it."""
    if key in hf and hf[key] not in allowed:
        raise ConfigError(f"config.json: {key}={hf[key]!r} is not supported ({why})")


def tied(names: Collection[str], read: Callable[[str], Tensor], head: str, embedding: str) -> bool:
    """Whether the output projection is the token embedding: no ``head`` tensor saved, or an equal one."""
    if head not in names:
        return True
    return embedding in names and torch.equal(read(head), read(embedding))
