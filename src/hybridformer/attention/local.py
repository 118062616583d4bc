"""Sliding-window attention with optional global tokens (Longformer), computed band by band."""

from __future__ import annotations

import torch
from torch import Tensor

from ..cache import RollingKVCache
from ..errors import ConfigError
from .base import AttentionKernel, attend
from .bias import ScoreBias
from .masks import drop_empty_padding, position_mask


class SlidingWindowAttention(AttentionKernel):
    """Each query sees ``window`` keys on each side (causal: the ``window`` previous and itself);
    the first ``num_global`` tokens attend to and are attended by every token (Beltagy et al., 2020).

    Queries go in blocks of ``chunk_size``; a block attends only its band of keys (plus the global
    keys) with SDPA's fused kernel, so time and memory are O(L · (window + chunk)) forward and
    backward — never an L × L mask. Global query rows are one extra dense pass over all keys.
    Decoding keeps a rolling cache bounded by ``num_global + window`` keys however long the output.
    """

    def __init__(self, *, window: int = 256, num_global: int = 0, chunk_size: int = 128, dropout: float = 0.0) -> None:
        super().__init__()
        for name, value, least in (("window", window, 1), ("num_global", num_global, 0), ("chunk_size", chunk_size, 1)):
            if value < least:
                raise ConfigError(f"attention 'sliding_window': {name} must be >= {least}, got {value}")
        self.window, self.num_global, self.chunk_size, self.dropout = window, num_global, chunk_size, dropout

    def forward(
        self, q: Tensor, k: Tensor, v: Tensor, *, causal: bool,
        key_padding_mask: Tensor | None = None, bias: ScoreBias | None = None,
    ) -> Tensor:
        q_len, k_len = q.shape[2], k.shape[2]
        offset = k_len - q_len  # query i sits at key position offset + i
        padding = drop_empty_padding(key_padding_mask)
        outputs = []
        for start in range(0, q_len, self.chunk_size):
            q_pos = torch.arange(start, min(start + self.chunk_size, q_len), device=q.device) + offset
            lo = max(0, int(q_pos[0]) - self.window)
            hi = int(q_pos[-1]) + 1 if causal else min(k_len, int(q_pos[-1]) + 1 + self.window)
            k_pos = torch.arange(lo, hi, device=q.device)
            if self.num_global and lo > 0:  # global keys left of the band
                k_pos = torch.cat([torch.arange(min(self.num_global, lo), device=q.device), k_pos])
            outputs.append(self._attend(q[:, :, start : start + self.chunk_size], k, v, q_pos, k_pos, causal,
                                        padding, bias, window=self.window))
        out = torch.cat(outputs, dim=2) if len(outputs) > 1 else outputs[0]
        global_rows = min(q_len, max(0, self.num_global - offset))
        if global_rows:  # global queries attend every key
            q_pos = torch.arange(global_rows, device=q.device) + offset
            dense = self._attend(q[:, :, :global_rows], k, v, q_pos, torch.arange(k_len, device=q.device),
                                 causal, padding, bias, window=None)
            out = torch.cat([dense, out[:, :, global_rows:]], dim=2)
        return out

    def _attend(
        self, q: Tensor, k: Tensor, v: Tensor, q_pos: Tensor, k_pos: Tensor, causal: bool,
        padding: Tensor | None, bias: ScoreBias | None, *, window: int | None,
    ) -> Tensor:
        """Queries at absolute ``q_pos`` over the keys at ``k_pos`` (gathered; contiguous when possible)."""
        contiguous = int(k_pos[-1]) - int(k_pos[0]) + 1 == len(k_pos)
        cols = slice(int(k_pos[0]), int(k_pos[-1]) + 1) if contiguous else k_pos
        keys, values = k[:, :, cols], v[:, :, cols]
        allowed = position_mask(
            q_pos[:, None], k_pos[None, :], causal=causal, window=window, num_global=self.num_global,
            key_padding=None if padding is None else padding[:, None, None, cols])
        score_bias = None if bias is None else bias.between(q_pos[:, None], k_pos[None, :])
        dropout = self.dropout if self.training else 0.0
        return attend(q, keys, values, allowed=allowed, bias=score_bias, dropout=dropout)

    def new_state(self) -> RollingKVCache:
        return RollingKVCache(self.window, self.num_global)

    def step(self, q: Tensor, k: Tensor, v: Tensor, state: RollingKVCache, *, bias: ScoreBias | None = None) -> Tensor:
        """Attend the new tokens over the kept keys (global + last ``window``) and themselves."""
        keys, values, k_pos = state.extend(k, v)
        q_pos = k_pos[-q.shape[2]:]
        allowed = position_mask(q_pos[:, None], k_pos[None, :], causal=True, window=self.window,
                                num_global=self.num_global)
        score_bias = None if bias is None else bias.between(q_pos[:, None], k_pos[None, :])
        return attend(q, keys, values, allowed=allowed, bias=score_bias)
