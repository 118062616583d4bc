"""Absolute position embeddings (sinusoidal, learned) and rotary position embeddings (RoPE)."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .rope_scaling import scaled_inv_freq


class SinusoidalPositions(nn.Module):
    """Fixed sin/cos embeddings (Vaswani et al., 2017); any length, no parameters.

    The table is computed once and grown on demand, so a decoding step is one index lookup.
    ``layout``: ``interleaved`` puts sin/cos of one frequency in channels 2i/2i+1 (tensor2tensor,
    fairseq); ``halves`` puts all sines first, then all cosines (Marian).
    """

    def __init__(self, d_model: int, layout: str = "interleaved") -> None:
        super().__init__()
        self.d_model, self.layout = d_model, layout
        self.register_buffer("table", self.compute(d_model, 1024, layout), persistent=False)

    @staticmethod
    def compute(d_model: int, length: int, layout: str = "interleaved") -> Tensor:
        freqs = torch.exp(torch.arange(0, d_model, 2).float() * (-math.log(10000.0) / d_model))
        angles = torch.arange(length).float()[:, None] * freqs[None]
        table = torch.zeros(length, d_model)
        if layout == "halves":
            half = (d_model + 1) // 2
            table[:, :half] = angles.sin()
            table[:, half:] = angles.cos()[:, : d_model // 2]
            return table
        table[:, 0::2] = angles.sin()
        table[:, 1::2] = angles.cos()[:, : d_model // 2]
        return table

    def forward(self, positions: Tensor) -> Tensor:
        if not torch.compiler.is_compiling():  # a compiled step cannot branch on values: its caller reserves
            self.reserve(int(positions.max()) + 1 if positions.numel() else 0)
        return self.table[positions]

    def reserve(self, length: int) -> None:
        """Grow the table to hold positions ``0 .. length - 1``."""
        if length > len(self.table):
            grown = self.compute(self.d_model, max(length, 2 * len(self.table)), self.layout)
            self.table = grown.to(self.table.device)


class LearnedPositions(nn.Module):
    """A trained embedding per position up to ``max_positions``.

    ``offset`` rows come before position 0 (BART/mBART keep 2, RoPE-less RoBERTa pad_id + 1), so
    position p reads row ``p + offset`` and the table has ``max_positions + offset`` rows.
    """

    def __init__(self, max_positions: int, d_model: int, offset: int = 0) -> None:
        super().__init__()
        self.max_positions, self.offset = max_positions, offset
        self.table = nn.Embedding(max_positions + offset, d_model)
        nn.init.normal_(self.table.weight, std=0.02)

    def forward(self, positions: Tensor) -> Tensor:
        # a compiled decoding step cannot check values; the output cap keeps it inside the table
        if not torch.compiler.is_compiling() and int(positions.max()) >= self.max_positions:
            raise ValueError(
                f"position {int(positions.max())} exceeds max_positions={self.max_positions}; "
                "raise model.max_positions or use position=rope/alibi/sinusoidal"
            )
        return self.table(positions + self.offset if self.offset else positions)


class RotaryEmbedding(nn.Module):
    """RoPE (Su et al., 2021): rotate pairs of q/k channels by position-dependent angles.

    ``scaling`` (see :mod:`hybridformer.rope_scaling`) stretches the frequencies for contexts longer
    than the model was trained on; its knobs are keyword arguments. ``dynamic`` and ``longrope``
    scaling depend on the largest position of each call, so their frequencies are recomputed per call
    past ``original_max_positions``.
    """

    def __init__(self, head_dim: int, base: float = 10000.0, *, scaling: str | None = None,
                 **scaling_options: float | int | bool | None) -> None:
        super().__init__()
        self.head_dim, self.base, self.scaling, self.scaling_options = head_dim, base, scaling, scaling_options
        inv_freq, self.attention_factor = scaled_inv_freq(head_dim, base, scaling, **scaling_options)
        self.register_buffer("inv_freq", inv_freq, persistent=False)
        # left-padded prompts share one call, whose largest position would set every row's dynamic frequencies
        self.left_padding = scaling != "dynamic"

    def frequencies(self, positions: Tensor) -> tuple[Tensor, float]:
        if self.scaling in ("dynamic", "longrope") and len(positions):
            seq_len = int(positions.max()) + 1
            if seq_len > self.scaling_options["original_max_positions"]:
                inv_freq, factor = scaled_inv_freq(self.head_dim, self.base, self.scaling, seq_len=seq_len,
                                                   **self.scaling_options)
                return inv_freq.to(self.inv_freq.device), factor
        return self.inv_freq, self.attention_factor

    def forward(self, positions: Tensor) -> Rotation:
        """positions: (L,), or (batch, L) when each row has its own (left-padded prompts)."""
        inv_freq, factor = self.frequencies(positions)
        angles = positions.float()[..., None] * inv_freq  # (L | batch, L, head_dim/2)
        angles = torch.cat([angles, angles], dim=-1)
        cos, sin = angles.cos(), angles.sin()
        if factor != 1.0:
            cos, sin = cos * factor, sin * factor
        if positions.dim() == 2:  # (batch, 1, L, head_dim): broadcast over the heads
            cos, sin = cos[:, None], sin[:, None]
        return Rotation(cos, sin, inv_freq)


class Rotation:
    """Precomputed cos/sin for one call's positions, applied to every layer's q and k.

    ``inv_freq`` (the call's frequencies) lets a kernel move an already rotated vector to another
    position (:meth:`shift`): StreamingLLM's sinks are scored from the query's position in the cache.
    """

    def __init__(self, cos: Tensor, sin: Tensor, inv_freq: Tensor | None = None) -> None:
        self.cos, self.sin = cos, sin  # (L, head_dim), or (batch, 1, L, head_dim) for per-row positions
        self.inv_freq = inv_freq  # (head_dim/2,)
        self._tables: dict[torch.dtype, tuple[Tensor, Tensor]] = {}

    def rotate(self, x: Tensor) -> Tensor:
        """x: (batch, heads, L, head_dim) -> same, rotated (half-split channel pairing).

        ``rotate_half(x) · sin`` is computed as ``roll(x) · (-sin₁, sin₂)``: the same products bit for bit, in two
        operations instead of five. Every layer of a decoding step rotates q and k, so the tables are cast and
        signed once per call and dtype (half the eager cost of RoPE at batch 1 on CPU)."""
        if x.dtype not in self._tables:
            cos, sin = self.cos.to(x.dtype), self.sin.to(x.dtype)
            first, second = sin.chunk(2, dim=-1)
            self._tables[x.dtype] = cos, torch.cat([-first, second], dim=-1)
        cos, signed_sin = self._tables[x.dtype]
        return x * cos + x.roll(x.shape[-1] // 2, -1) * signed_sin

    def shift(self, x: Tensor, back: Tensor) -> Tensor:
        """x: (batch, heads, L, head_dim) rotated at positions p -> rotated at ``p - back`` (back: (L,), or
        (batch, heads, L) for vectors that sit at other positions in each head).

        A pure rotation by ``-back`` positions: any attention factor already in ``x`` stays as it is.
        """
        if self.inv_freq is None:
            raise ValueError("this rotation carries no frequencies, so it cannot move vectors to other positions")
        angles = -back.to(self.inv_freq.dtype)[..., None] * self.inv_freq  # (..., L, head_dim/2)
        angles = torch.cat([angles, angles], dim=-1)
        return x * angles.cos().to(x.dtype) + rotate_half(x) * angles.sin().to(x.dtype)


def rotate_half(x: Tensor) -> Tensor:
    """(x1, x2) -> (-x2, x1) over the two halves of the last dimension: RoPE's 90-degree turn."""
    first, second = x.chunk(2, dim=-1)
    return torch.cat([-second, first], dim=-1)
