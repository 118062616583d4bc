"""The attention-kernel protocol every mechanism implements."""

from __future__ import annotations

import inspect

from torch import Tensor, nn

from ..cache import KVCache
from .bias import ScoreBias


class AttentionKernel(nn.Module):
    """``forward(q, k, v, *, causal, key_padding_mask=None, bias=None) -> out``.

    q: (batch, heads, q_len, head_dim); k, v: (batch, kv_heads, kv_len, head_dim);
    key_padding_mask: (batch, kv_len), True = padding; returns (batch, heads, q_len, head_dim).
    Options are keyword-only ``__init__`` parameters. A kernel also owns its decoding memory:
    the default is a growing KV cache over which the query attends exactly.
    """

    @classmethod
    def check(cls, *, causal: bool, position: str, where: str) -> None:
        """Raise ConfigError if this mechanism cannot serve a (causal?) stack with these positions."""

    def forward(
        self, q: Tensor, k: Tensor, v: Tensor, *, causal: bool,
        key_padding_mask: Tensor | None = None, bias: ScoreBias | None = None,
    ) -> Tensor:
        raise NotImplementedError

    def new_state(self) -> KVCache:
        return KVCache()

    def step(self, q: Tensor, k: Tensor, v: Tensor, state: KVCache, *, bias: ScoreBias | None = None) -> Tensor:
        """Append the new keys/values, then attend causally over everything cached."""
        keys, values = state.append(k, v)
        if bias is not None:
            bias = bias.with_keys(state.positions(q.device))
        return self(q, keys, values, causal=True, bias=bias)


def expand_kv(k: Tensor, heads: int) -> Tensor:
    """Repeat grouped key/value heads (GQA/MQA) so each query head has its own."""
    groups = heads // k.shape[1]
    return k if groups == 1 else k.repeat_interleave(groups, dim=1)


def kernel_options(kernel_cls: type) -> list[str]:
    """The options a kernel takes: its keyword-only ``__init__`` parameters."""
    params = inspect.signature(kernel_cls.__init__).parameters.values()
    return [p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY]
