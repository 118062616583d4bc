"""Structured attention-head pruning (Michel et al., 2019): remove heads for real, not by masking.

Here the heads to remove are *chosen* (globally, least important first, whole key/value groups
under GQA); the surgery that removes them, and that every pruned checkpoint replays when it is
built from ``ModelConfig.pruned_heads``, is :mod:`hybridformer.attention.head_subset`.
"""

from __future__ import annotations

from torch import Tensor, nn

from ..attention.head_subset import attention_modules, keep_heads, original_heads
from ..config import ModelConfig, parse_config
from ..errors import ConfigError


def select_heads(model: nn.Module, importance: dict[str, Tensor], fraction: float) -> dict[str, list[int]]:
    """Which current heads each module keeps after removing ``fraction`` of all heads, least important first.

    Groups (GQA; single heads otherwise) are ranked globally by importance summed over their query
    heads and normalised per module (Michel et al.'s per-layer L2 normalisation); every module keeps
    at least one group. Returns ``{module path: kept current head indices}`` for every module.
    """
    if not 0.0 <= fraction < 1.0:
        raise ConfigError(f"head fraction must be in [0, 1), got {fraction}")
    modules = attention_modules(model)
    candidates, kept_groups = [], {}
    for name, module in modules.items():
        group = module.heads // module.kv_heads
        scores = importance[name].float().view(module.kv_heads, group).sum(1)
        scores = scores / scores.norm().clamp(min=1e-12)
        kept_groups[name] = set(range(module.kv_heads))
        candidates += [(float(s), name, g, group) for g, s in enumerate(scores)]
    total_heads = sum(m.heads for m in modules.values())
    to_remove = round(fraction * total_heads)
    removed = 0
    for _, name, g, group in sorted(candidates, key=lambda c: c[0]):
        if removed + group > to_remove:
            break
        if len(kept_groups[name]) > 1:
            kept_groups[name].discard(g)
            removed += group
    return {name: [g * (m.heads // m.kv_heads) + i for g in sorted(kept_groups[name])
                   for i in range(m.heads // m.kv_heads)] for name, m in modules.items()}


def prune_heads(model: nn.Module, config: ModelConfig, fraction: float,
                importance: dict[str, Tensor]) -> ModelConfig:
    """Remove ``fraction`` of the heads (the least important by ``importance``) from ``model`` in place.

    Returns the config to save with it (``pruned_heads`` updated), so the pruned model round-trips
    through :func:`~hybridformer.save_checkpoint` / :func:`~hybridformer.load_checkpoint`.
    """
    if config.quantization is not None:
        raise ConfigError("cannot prune heads of a quantized model; prune the float checkpoint, then quantize")
    per_head_bias = config.position in ("alibi", "t5")
    pruned = dict(config.pruned_heads or {})
    for name, kept in select_heads(model, importance, fraction).items():
        module = attention_modules(model)[name]
        if len(kept) == module.heads:
            continue
        originals = original_heads(module)
        keep_heads(module, kept, per_head_bias=per_head_bias)
        pruned[name] = [originals[h] for h in kept]
    if not pruned:
        return config
    return parse_config(ModelConfig, {**config.model_dump(), "pruned_heads": pruned})


def head_counts(model: nn.Module) -> dict[str, int]:
    """Query heads left in each attention module."""
    return {name: module.heads for name, module in attention_modules(model).items()}

