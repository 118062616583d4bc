"""Head subsets: attention modules shrunk to some of their heads, and the replay of a pruned config.

Pruning a head (Michel et al., 2019) deletes its rows from the query (and, for a whole key/value
group, the key and value) projections and its columns from the output projection, so parameters
and compute both fall. With grouped-query attention a key/value head serves ``heads / kv_heads``
query heads, so the unit is a whole group: its query heads and their shared key/value head.

This is model surgery that every pruned checkpoint replays when it is built
(``ModelConfig.pruned_heads`` -> :func:`apply_pruned_heads` in ``build_model``), so it lives
here, below ``models``; *choosing* which heads to remove is ``hybridformer.compress``'s job.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..errors import ConfigError
from .base import AttentionKernel
from .bias import ScoreBias
from .multihead import CrossAttention, MultiHeadAttention

AttentionModule = MultiHeadAttention | CrossAttention


def attention_modules(model: nn.Module) -> dict[str, AttentionModule]:
    """Every self- and cross-attention mixer of ``model`` by its module path (``decoder.layers.0...``)."""
    return {name: m for name, m in model.named_modules() if isinstance(m, (MultiHeadAttention, CrossAttention))}


class HeadSubsetKernel(AttentionKernel):
    """Wraps a kernel so a per-head score bias (ALiBi slopes, T5 tables: one row per *original*
    head) is narrowed to the heads a pruned module kept; everything else is the inner kernel."""

    def __init__(self, inner: AttentionKernel, kept: list[int]) -> None:
        super().__init__()
        self.inner = inner
        self.left_padding, self.bounded_state = inner.left_padding, inner.bounded_state
        self.register_buffer("kept", torch.tensor(kept), persistent=False)

    def _narrow(self, bias: ScoreBias | None) -> ScoreBias | None:
        if bias is None:
            return None
        fn, kept = bias.fn, self.kept
        slopes = None if bias.slopes is None else bias.slopes.index_select(0, kept.to(bias.slopes.device))
        return ScoreBias(lambda q_pos, k_pos: fn(q_pos, k_pos).index_select(0, kept.to(q_pos.device)),
                         bias.q_pos, bias.k_pos, slopes)

    def forward(self, q: Tensor, k: Tensor, v: Tensor, *, causal: bool,
                key_padding_mask: Tensor | None = None, bias: ScoreBias | None = None) -> Tensor:
        return self.inner(q, k, v, causal=causal, key_padding_mask=key_padding_mask, bias=self._narrow(bias))

    def new_state(self):
        return self.inner.new_state()

    def step(self, q: Tensor, k: Tensor, v: Tensor, state, *, bias: ScoreBias | None = None, **extra) -> Tensor:
        return self.inner.step(q, k, v, state, bias=self._narrow(bias), **extra)


def original_heads(module: AttentionModule) -> list[int]:
    """The original indices of the query heads this module still has."""
    return list(getattr(module, "original_heads", range(module.heads)))


def keep_heads(module: AttentionModule, kept: list[int], *, per_head_bias: bool = False) -> None:
    """Shrink ``module`` in place to its current query heads ``kept`` (whole key/value groups only).

    ``per_head_bias``: the stack feeds this module a per-head score bias (ALiBi/T5), which must
    then be narrowed to the kept heads.
    """
    group = module.heads // module.kv_heads
    kept = sorted(kept)
    groups = sorted({h // group for h in kept})
    if kept != [g * group + i for g in groups for i in range(group)]:
        raise ConfigError(f"heads {kept} are not whole key/value groups of {group} query heads (GQA)")
    if len(kept) == module.heads:
        return
    d, heads, kv = module.head_dim, module.heads, module.kv_heads
    q_rows, kv_rows = _rows(kept, d), _rows(groups, d)
    if isinstance(module, CrossAttention):
        module.q_proj = _select(module.q_proj, rows=q_rows)
        module.kv_proj = _select(module.kv_proj, rows=torch.cat([kv_rows, kv_rows + kv * d]))
    else:
        module.qkv_proj = _select(module.qkv_proj, rows=torch.cat([q_rows, kv_rows + heads * d,
                                                                     kv_rows + (heads + kv) * d]))
    module.out_proj = _select(module.out_proj, cols=q_rows)
    originals = original_heads(module)
    module.original_heads = [originals[h] for h in kept]
    module.heads, module.kv_heads = len(kept), len(groups)
    inner = module.kernel.inner if isinstance(module.kernel, HeadSubsetKernel) else module.kernel
    inner.keep_heads(kept)
    if per_head_bias:
        module.kernel = HeadSubsetKernel(inner, module.original_heads)


def _rows(heads: list[int], head_dim: int) -> Tensor:
    """Feature indices of ``heads`` in a (heads * head_dim) projection."""
    return (torch.tensor(heads)[:, None] * head_dim + torch.arange(head_dim)[None]).flatten()


def _select(linear: nn.Linear, *, rows: Tensor | None = None, cols: Tensor | None = None) -> nn.Linear:
    """A new Linear holding the chosen output rows / input columns of ``linear``'s weight (and bias)."""
    weight = linear.weight.detach()
    if rows is not None:
        weight = weight.index_select(0, rows.to(weight.device))
    if cols is not None:
        weight = weight.index_select(1, cols.to(weight.device))
    bias = linear.bias
    if bias is not None and rows is not None:
        bias = bias.detach().index_select(0, rows.to(weight.device))
    new = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None, device=weight.device,
                    dtype=weight.dtype)
    with torch.no_grad():
        new.weight.copy_(weight)
        if bias is not None:
            new.bias.copy_(bias)
    new.train(linear.training)
    return new


def apply_pruned_heads(model: nn.Module, pruned_heads: dict[str, list[int]] | None, *,
                       per_head_bias: bool = False) -> nn.Module:
    """Replay ``ModelConfig.pruned_heads`` (kept heads in the original numbering) on a model."""
    if not pruned_heads:
        return model
    modules = attention_modules(model)
    for name, kept in pruned_heads.items():
        module = modules.get(name)
        if module is None:
            raise ConfigError(f"pruned_heads: {name!r} is not an attention module of this model; "
                              f"attention modules: {', '.join(modules) or '(none)'}")
        originals = original_heads(module)
        if not kept or len(set(kept)) != len(kept) or not set(kept) <= set(originals):
            raise ConfigError(f"pruned_heads.{name}: {kept} must be distinct heads among {originals}")
        try:
            keep_heads(module, [originals.index(h) for h in kept], per_head_bias=per_head_bias)
        except ConfigError as exc:
            raise ConfigError(f"pruned_heads.{name}: {exc}") from None
    return model
