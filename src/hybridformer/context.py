"""What a mixer receives besides its input (``MixerContext``), and the score bias it may carry.

Every mixer — self-attention, a convolution module, a cgMLP — is ``forward(x, ctx) -> x``. The
context lives here, beside ``cache.py`` and below ``attention/``, ``conv/`` and ``blocks/``, so
every mixer can type its ``ctx`` without importing the layers above it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import torch
from torch import Tensor

from .cache import DecodingCache
from .position import Rotation


@dataclass
class ScoreBias:
    """``fn(q_pos[:, None], k_pos[None, :]) -> (heads, q, k)`` bound to the positions of one call."""

    fn: Callable[[Tensor, Tensor], Tensor]
    q_pos: Tensor  # (q_len,)
    k_pos: Tensor  # (k_len,)
    slopes: Tensor | None = None  # (heads,): set when fn = -slopes · |q_pos - k_pos| (ALiBi)

    def dense(self, q_rows: slice = slice(None), k_cols: slice = slice(None)) -> Tensor:
        """(heads, q, k) for a rectangular block of this call's queries and keys."""
        return self.fn(self.q_pos[q_rows, None], self.k_pos[None, k_cols])

    def between(self, q_pos: Tensor, k_pos: Tensor) -> Tensor:
        """(heads, ...) for arbitrary broadcastable position tensors (gathered windows)."""
        return self.fn(q_pos, k_pos)

    def with_keys(self, k_pos: Tensor) -> ScoreBias:
        return replace(self, k_pos=k_pos)

    def distance_slopes(self) -> Tensor | None:
        """Per-head slopes when this bias is ``-slope · |q_pos - k_pos|`` (ALiBi) over ordered positions.

        Such a bias is linear on each side of the diagonal, so it splits into a key feature
        ``slope · k_pos`` and a per-query constant that the softmax ignores: a kernel can fold it into
        q·k as one extra dimension instead of building any bias tensor (``folded_bias``). That needs
        the positions to follow the key order: the queries are the last keys (``q_pos ==
        k_pos[-q_len:]``, the causal mask's bottom-right alignment) and key positions never
        decrease. None otherwise (another bias, or positions that do not line up).
        """
        q_len = self.q_pos.shape[0]
        if self.slopes is None or q_len > self.k_pos.shape[0]:
            return None
        aligned = torch.equal(self.q_pos, self.k_pos[self.k_pos.shape[0] - q_len:])
        return self.slopes if aligned and bool((self.k_pos.diff() >= 0).all()) else None


@dataclass
class MixerContext:
    """What a mixer may need besides its input: masks, causality, positions, cache, encoder memory."""

    padding_mask: Tensor | None  # (batch, L) True = padding
    causal: bool
    positions: Tensor  # (L,) absolute positions of this call's tokens
    rope: Rotation | None = None
    score_bias: ScoreBias | None = None
    cache: DecodingCache | None = None  # set in incremental decoding
    memory: Tensor | None = None  # encoder output, for cross-attention
    memory_padding_mask: Tensor | None = None
