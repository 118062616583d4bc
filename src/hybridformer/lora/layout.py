"""Where LoRA adapters attach in our models, and what each adapter module is called in a PEFT file.

hybridformer computes q, k and v in one fused projection (``qkv_proj``; ``kv_proj`` in cross-attention)
and a gated FFN's gate and up in one (``linear1``), where PEFT adapters and Hugging Face models have one
module per projection. A fused projection therefore carries one LoRA per *part*, stacked: ``A`` is
``(parts·rank, in)`` and ``B`` is ``(out, parts·rank)`` kept block-diagonal (part *i* owns ``A``'s rows
``i·rank...`` and only those columns of ``B`` in its own rows). Part *i*'s adapter is then exactly
``A[i], B[rows_i, i]`` — the parametrisation of separate adapters, written to and read from the same file.

For a model Hugging Face can represent (a converted Llama, Mistral or Qwen2), the module names in the
file are Hugging Face's (``model.layers.0.self_attn.q_proj``), taken from the conversion's tensor rules,
so ``peft`` loads the adapter on the ``export --to hf`` folder. Other models use our own module names.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import nn

from ..attention.multihead import CrossAttention, MultiHeadAttention
from ..config import ModelConfig
from ..errors import ConfigError
from ..ffn import FeedForward
from ..interop.export import export_architecture, hf_blockers

PEFT_PREFIX = "base_model.model."  # how PEFT prefixes module names in adapter_model.safetensors
_HF_TARGETS = {"q_proj": "q", "k_proj": "k", "v_proj": "v", "o_proj": "o", "gate_proj": "gate", "up_proj": "up",
               "down_proj": "down"}


@dataclass(frozen=True)
class Part:
    """One projection inside one of our linear layers: its rows of the weight and its name in the file."""

    target: str  # q, k, v, o, gate, up or down
    name: str  # module name in the adapter file (without PEFT's prefix)
    start: int
    stop: int


Layout = dict[str, list[Part]]  # our linear module's name -> its parts, in row order


def lora_layout(model: nn.Module, cfg: ModelConfig, meta: dict[str, Any]) -> Layout:
    """Every projection of ``model`` an adapter may target, named as in the adapter file."""
    layout: Layout = {}
    for name, module in model.named_modules():
        prefix = f"{name}." if name else ""
        if isinstance(module, MultiHeadAttention):
            q, kv = module.heads * module.head_dim, module.kv_heads * module.head_dim
            layout[f"{prefix}qkv_proj"] = _split(f"{prefix}qkv_proj", ("q", "k", "v"), (q, kv, kv))
        elif isinstance(module, CrossAttention):
            layout[f"{prefix}q_proj"] = _split(f"{prefix}q_proj", ("q",), (module.q_proj.out_features,))
            kv = module.kv_proj.out_features // 2
            layout[f"{prefix}kv_proj"] = _split(f"{prefix}kv_proj", ("k", "v"), (kv, kv))
        if isinstance(module, MultiHeadAttention | CrossAttention):
            layout[f"{prefix}out_proj"] = _split(f"{prefix}out_proj", ("o",), (module.out_proj.out_features,))
        elif isinstance(module, FeedForward):
            rows = module.linear1.out_features
            targets, sizes = (("gate", "up"), (rows // 2, rows // 2)) if module.gated else (("up",), (rows,))
            layout[f"{prefix}linear1"] = _split(f"{prefix}linear1", targets, sizes)
            layout[f"{prefix}linear2"] = _split(f"{prefix}linear2", ("down",), (module.linear2.out_features,))
    hf = hf_module_names(cfg, meta)
    if hf is not None:
        layout = {ours: [Part(p.target, hf[ours][i], p.start, p.stop) for i, p in enumerate(parts)]
                  for ours, parts in layout.items()}
    return layout


def _split(module: str, targets: tuple[str, ...], sizes: tuple[int, ...]) -> list[Part]:
    parts, start = [], 0
    for target, size in zip(targets, sizes, strict=True):
        name = module if len(targets) == 1 else f"{module}.{target}"
        parts.append(Part(target, name, start, start + size))
        start += size
    return parts


def hf_module_names(cfg: ModelConfig, meta: dict[str, Any]) -> dict[str, list[str]] | None:
    """Our linear module -> the Hugging Face modules it fuses, for a model ``export --to hf`` can write."""
    if hf_blockers(cfg, meta):
        return None
    names: dict[str, list[str]] = {}
    for rule in export_architecture(cfg, meta).rules(cfg):
        theirs = [name.removesuffix(".weight") for name in rule.theirs]
        if rule.ours.endswith(".weight") and all(name.rsplit(".", 1)[-1] in _HF_TARGETS for name in theirs):
            names[rule.ours.removesuffix(".weight")] = theirs
    return names


def chosen_parts(layout: Layout, targets: list[str]) -> Layout:
    """The layout cut down to ``targets`` (modules with no targeted part left out)."""
    chosen = {module: [p for p in parts if p.target in targets] for module, parts in layout.items()}
    chosen = {module: parts for module, parts in chosen.items() if parts}
    if not chosen:
        raise ConfigError(f"train.lora.targets={targets}: this model has none of these projections")
    return chosen


def by_file_name(layout: Layout) -> dict[str, tuple[str, Part]]:
    """File module name -> (our module, part): how an adapter file is read into our model."""
    return {part.name: (module, part) for module, parts in layout.items() for part in parts}
