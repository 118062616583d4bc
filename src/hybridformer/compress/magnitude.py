"""Unstructured magnitude pruning (Han et al., 2015; See et al., 2016 for NMT; Zhu & Gupta, 2017 schedule).

The smallest-magnitude weights of the linear layers are set to zero — across all layers at once
(``scope="global"``, which See et al. found best for NMT) or the same fraction in every layer
(``scope="layer"``). Embeddings and the (usually tied) output projection are left dense. Zeros
do not make dense matmuls faster: this trades accuracy for compressibility, not speed (head
pruning and int8 are the speed levers; see docs/compression.md).

For prune-then-fine-tune, :func:`magnitude_prune` with ``permanent=False`` keeps the masks on
the model through ``torch.nn.utils.prune`` (``weight = weight_orig * weight_mask``), so
optimizer steps cannot revive pruned weights; :func:`make_permanent` folds them in before saving.
:func:`iterative_magnitude_prune` drives Zhu & Gupta's gradual schedule, calling the trainer
between phases.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.nn.utils import prune as torch_prune

from ..errors import ConfigError


def prunable_weights(model: nn.Module) -> dict[str, nn.Linear]:
    """Linear layers whose weight magnitude pruning may touch: all but those sharing an embedding."""
    embedded = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    layers = {}
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear) and id(getattr(module, "weight_orig", module.weight)) not in embedded:
            layers[name] = module
    return layers


def magnitude_masks(model: nn.Module, sparsity: float, scope: str = "global") -> dict[str, Tensor]:
    """Boolean keep-masks (True = keep) zeroing exactly ``round(sparsity · n)`` of the smallest weights.

    ``scope="global"`` ranks all prunable weights together; ``"layer"`` prunes each layer to ``sparsity``.
    Ties at the threshold are broken by position, so the count is exact.
    """
    if not 0.0 <= sparsity < 1.0:
        raise ConfigError(f"sparsity must be in [0, 1), got {sparsity}")
    if scope not in ("global", "layer"):
        raise ConfigError(f"magnitude pruning scope must be 'global' or 'layer', got {scope!r}")
    layers = prunable_weights(model)
    if not layers:
        raise ConfigError("the model has no prunable linear layers (is it quantized?)")
    weights = {name: layer.weight.detach().abs().float() for name, layer in layers.items()}
    if scope == "layer":
        return {name: _keep_largest(w.flatten(), sparsity).view_as(w) for name, w in weights.items()}
    flat = torch.cat([w.flatten() for w in weights.values()])
    keep = _keep_largest(flat, sparsity).split([w.numel() for w in weights.values()])
    return {name: k.view_as(w) for (name, w), k in zip(weights.items(), keep, strict=True)}


def _keep_largest(values: Tensor, sparsity: float) -> Tensor:
    drop = round(sparsity * values.numel())
    keep = torch.ones_like(values, dtype=torch.bool)
    if drop:
        keep[values.topk(drop, largest=False, sorted=False).indices] = False
    return keep


def magnitude_prune(model: nn.Module, sparsity: float, *, scope: str = "global",
                    permanent: bool = True) -> dict[str, Tensor]:
    """Zero the smallest weights to ``sparsity``; returns the keep-masks by layer name.

    ``permanent=True`` writes the zeros into the weights (ready to save); ``permanent=False``
    installs the masks with ``torch.nn.utils.prune`` for fine-tuning (call :func:`make_permanent`
    before saving — until then the state dict holds ``weight_orig``/``weight_mask``).
    """
    masks = magnitude_masks(make_permanent(model), sparsity, scope)  # earlier zeros rank lowest: kept pruned
    layers = prunable_weights(model)
    for name, mask in masks.items():
        layer = layers[name]
        if permanent:
            with torch.no_grad():
                layer.weight.mul_(mask.to(layer.weight.dtype))
        else:
            torch_prune.custom_from_mask(layer, "weight", mask)
    return masks


def make_permanent(model: nn.Module) -> nn.Module:
    """Fold any pruning masks into the weights, so the state dict has plain ``weight`` tensors again."""
    for module in model.modules():
        if isinstance(module, nn.Linear) and hasattr(module, "weight_mask"):
            torch_prune.remove(module, "weight")
    return model


def sparsity(model: nn.Module) -> float:
    """The fraction of exactly-zero weights among the prunable linear weights (masks applied)."""
    layers = prunable_weights(model)
    zeros = sum(int((layer.weight == 0).sum()) for layer in layers.values())
    return zeros / max(1, sum(layer.weight.numel() for layer in layers.values()))


def sparsity_schedule(final: float, phases: int, initial: float = 0.0) -> list[float]:
    """Zhu & Gupta (2017)'s cubic schedule: ``s_t = s_f + (s_i - s_f)(1 - t/n)³`` for t = 1..n.

    Prunes fast while many redundant weights remain, then slowly; the last value is ``final``.
    """
    if phases < 1:
        raise ConfigError(f"the pruning schedule needs at least one phase, got {phases}")
    return [final + (initial - final) * (1 - t / phases) ** 3 for t in range(1, phases + 1)]


def iterative_magnitude_prune(
    model: nn.Module, final_sparsity: float, phases: int,
    finetune: Callable[[nn.Module, int, float], None] | None = None, *, scope: str = "global",
) -> list[float]:
    """Prune gradually to ``final_sparsity`` over ``phases``, calling ``finetune(model, phase, sparsity)``
    after each pruning step (the trainer's hook; masks are held during it); returns the sparsities
    reached. The model ends with the zeros made permanent.
    """
    reached = []
    for phase, target in enumerate(sparsity_schedule(final_sparsity, phases)):
        magnitude_prune(model, target, scope=scope, permanent=finetune is None)
        if finetune is not None:
            finetune(model, phase, target)
            make_permanent(model)
        reached.append(sparsity(model))
    return reached
