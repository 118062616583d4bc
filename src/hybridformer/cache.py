"""Per-layer incremental decoding state.

A :class:`DecodingCache` maps each stateful module (an attention or a convolution mixer) to
its own state object; beam search only ever calls :meth:`DecodingCache.reorder`. Caches are
for inference (``torch.no_grad``): they write into preallocated buffers in place.
"""

from __future__ import annotations

import torch
from torch import Tensor


class KVCache:
    """Growing key/value cache; capacity doubles so a decoding step appends without re-allocating."""

    def __init__(self) -> None:
        self.keys: Tensor | None = None  # (batch, kv_heads, capacity, head_dim)
        self.values: Tensor | None = None
        self.length = 0

    def append(self, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Add ``k, v: (batch, kv_heads, n, head_dim)``; return all cached keys and values so far."""
        end = self.length + k.shape[2]
        if self.keys is None or end > self.keys.shape[2]:
            self._grow(k, v, max(end, 2 * self.length, 64))
        self.keys[:, :, self.length : end] = k
        self.values[:, :, self.length : end] = v
        self.length = end
        return self.keys[:, :, :end], self.values[:, :, :end]

    def _grow(self, k: Tensor, v: Tensor, capacity: int) -> None:
        batch, heads, _, dim = k.shape
        keys = k.new_empty(batch, heads, capacity, dim)
        values = v.new_empty(batch, heads, capacity, v.shape[-1])
        if self.keys is not None:
            keys[:, :, : self.length] = self.keys[:, :, : self.length]
            values[:, :, : self.length] = self.values[:, :, : self.length]
        self.keys, self.values = keys, values

    def positions(self, device: torch.device | None = None) -> Tensor:
        """Absolute positions of the cached keys (decoding always starts at position 0)."""
        return torch.arange(self.length, device=device)

    def reorder(self, index: Tensor) -> None:
        if self.keys is not None:
            self.keys = self.keys.index_select(0, index)
            self.values = self.values.index_select(0, index)


class StaticKV:
    """Keys and values computed once (cross-attention over the encoder output)."""

    def __init__(self, keys: Tensor, values: Tensor) -> None:
        self.keys, self.values = keys, values

    def reorder(self, index: Tensor) -> None:
        self.keys = self.keys.index_select(0, index)
        self.values = self.values.index_select(0, index)


class DecodingCache(dict):
    """All incremental state of one model: ``{module: state}``, each state with ``reorder(index)``."""

    def reorder(self, index: Tensor) -> None:
        """Keep batch rows ``index`` (beam search's surviving hypotheses), in that order."""
        for state in self.values():
            state.reorder(index)


class ConvState:
    """The last ``k − 1`` inputs of a causal convolution, so decoding step by step equals the full forward.

    Decoding starts at position 0, so the history starts as zeros: exactly the left padding the
    full causal forward uses.
    """

    def __init__(self, batch: int, history: int, channels: int, like: Tensor) -> None:
        self.history = like.new_zeros(batch, history, channels)  # (batch, k-1, channels)

    def extend(self, x: Tensor) -> Tensor:
        """x: (batch, n, channels) new inputs -> (batch, k-1+n, channels) window the conv needs."""
        window = torch.cat([self.history, x], dim=1)
        self.history = window[:, window.shape[1] - self.history.shape[1] :]
        return window

    def reorder(self, index: Tensor) -> None:
        self.history = self.history.index_select(0, index)
