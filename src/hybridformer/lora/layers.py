"""LoRA layers for training, by ``peft``: inject them into one of our models, read and write their factors.

``peft.inject_adapter_in_model`` works on any ``nn.Module``: it wraps each targeted ``nn.Linear`` in its
LoRA layer and freezes everything else. A fused projection with *n* targeted parts gets rank ``n·rank``
(and ``n·alpha``, so the scale stays ``alpha / rank``) with ``B`` masked block-diagonal, which makes it
exactly *n* separate adapters (see :mod:`~hybridformer.lora.layout`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..config import LoraConfig
from ..errors import ConfigError
from ..quantized import Int8WeightLinear
from .adapter import Adapter, peft_module
from .layout import PEFT_PREFIX, Layout, chosen_parts

ADAPTER_NAME = "default"


@dataclass
class LoraLayers:
    """The adapters injected into a model: which parts each wrapped module carries, and their rank."""

    parts: Layout
    rank: int

    def tensors(self, params: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """The adapter file's tensors (PEFT names) from the model's named parameters (or an EMA of them)."""
        out = {}
        for module, parts in self.parts.items():
            a, b = (params[f"{module}.lora_{kind}.{ADAPTER_NAME}.weight"].detach().float() for kind in "AB")
            for i, part in enumerate(parts):
                cols = slice(i * self.rank, (i + 1) * self.rank)
                out[f"{PEFT_PREFIX}{part.name}.lora_A.weight"] = a[cols].contiguous().cpu()
                out[f"{PEFT_PREFIX}{part.name}.lora_B.weight"] = b[part.start: part.stop, cols].contiguous().cpu()
        return out

    @torch.no_grad()
    def load(self, model: nn.Module, adapter: Adapter, lora: LoraConfig) -> None:
        """Set the factors from ``adapter`` (resume, or ``train.init_from`` an adapter): same parts, rank, scale."""
        wanted = {part.name for parts in self.parts.values() for part in parts}
        if set(adapter.factors) != wanted:
            extra = sorted(set(adapter.factors) - wanted) or sorted(wanted - set(adapter.factors))
            raise ConfigError(f"{adapter.path}: its modules differ from train.lora.targets={lora.targets} "
                              f"(e.g. {extra[0]}); set train.lora.targets to what the adapter adapts")
        for module, parts in self.parts.items():
            layer = model.get_submodule(module)
            a, b = layer.lora_A[ADAPTER_NAME].weight, layer.lora_B[ADAPTER_NAME].weight
            for i, part in enumerate(parts):
                pa, pb, scale = adapter.factors[part.name]
                if pa.shape[0] != self.rank or abs(scale - lora.alpha / lora.rank) > 1e-6 * scale:
                    raise ConfigError(f"{adapter.path}: {part.name} has rank {pa.shape[0]} and scale {scale:g}; "
                                      f"train.lora has rank {lora.rank} and alpha/rank {lora.alpha / lora.rank:g}")
                cols = slice(i * self.rank, (i + 1) * self.rank)
                a[cols] = pa
                b[part.start: part.stop, cols] = pb


def add_lora(model: nn.Module, layout: Layout, lora: LoraConfig) -> LoraLayers:
    """Wrap the targeted projections of ``model`` (in place) in ``peft`` LoRA layers; only they train."""
    peft = peft_module()
    parts = chosen_parts(layout, list(lora.targets))
    counts = {module.rsplit(".", 1)[-1]: len(p) for module, p in parts.items()}
    config = peft.LoraConfig(r=lora.rank, lora_alpha=lora.alpha, lora_dropout=lora.dropout, bias=lora.bias,
                            target_modules=list(parts),
                            rank_pattern={name: n * lora.rank for name, n in counts.items() if n > 1},
                            alpha_pattern={name: n * lora.alpha for name, n in counts.items() if n > 1})
    peft.inject_adapter_in_model(config, model, adapter_name=ADAPTER_NAME)
    for module, module_parts in parts.items():
        layer = model.get_submodule(module)
        # peft casts each input to the adapters' float32, and bf16 autocast casts it back: two copies of every
        # activation per layer for nothing (autocast, or float32 inputs without it, set the product's dtype)
        layer.cast_input_dtype_enabled = False
        b = layer.lora_B[ADAPTER_NAME].weight
        mask = torch.zeros_like(b)
        for i, part in enumerate(module_parts):
            mask[part.start: part.stop, i * lora.rank: (i + 1) * lora.rank] = 1.0
        if not bool(mask.all()):
            with torch.no_grad():
                b.mul_(mask)
            b.register_hook(lambda grad, mask=mask: grad * mask)  # off-block entries stay exactly zero
    return LoraLayers(parts, lora.rank)


def hold_frozen(model: nn.Module, precision: str) -> None:
    """Store the frozen projection weights in ``precision`` to shrink the base: ``bf16`` halves it (the
    computation runs under autocast), ``int8`` quarters it (symmetric per output channel, weight-only:
    :class:`~hybridformer.quantized.Int8WeightLinear`, differentiable in its input). Embeddings (and an output
    layer tied to them), norms, buffers and the adapters keep their precision."""
    embeddings = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    frozen = [(parent, name, child) for parent in model.modules() for name, child in parent.named_children()
              if isinstance(child, nn.Linear) and not child.weight.requires_grad and id(child.weight) not in embeddings]
    for parent, name, linear in frozen:
        if precision == "int8":
            setattr(parent, name, Int8WeightLinear.from_linear(linear))
        else:
            linear.weight.data = linear.weight.data.to(torch.bfloat16)
