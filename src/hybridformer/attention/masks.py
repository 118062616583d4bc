"""The one place attention masks are built (``True`` = the query may attend the key)."""

from __future__ import annotations

import torch
from torch import Tensor


def causal_mask(q_len: int, k_len: int, device: torch.device | None = None) -> Tensor:
    """(q_len, k_len) lower-triangular mask aligned to the end: query i sits at key position k_len-q_len+i."""
    offset = k_len - q_len
    q_idx = torch.arange(q_len, device=device)[:, None] + offset
    return torch.arange(k_len, device=device)[None, :] <= q_idx


def allowed_mask(
    q_len: int, k_len: int, *, causal: bool, key_padding_mask: Tensor | None, device: torch.device
) -> Tensor | None:
    """Broadcastable (batch|1, 1, q_len, k_len) bool mask, or None when everything is allowed."""
    mask = causal_mask(q_len, k_len, device)[None, None] if causal and q_len > 1 else None
    if key_padding_mask is not None:
        keep = ~key_padding_mask[:, None, None, :]
        mask = keep if mask is None else mask & keep
    return mask


def drop_empty_padding(key_padding_mask: Tensor | None) -> Tensor | None:
    """A padding mask with no padding is no mask (lets kernels take their unmasked fast path). A compiled step
    keeps the mask: its graph cannot branch on the mask's values."""
    if key_padding_mask is None or torch.compiler.is_compiling():
        return key_padding_mask
    if not bool(key_padding_mask.any()):
        return None
    return key_padding_mask


def position_mask(
    q_pos: Tensor, k_pos: Tensor, *, causal: bool, window: int | None = None, num_global: int = 0,
    key_padding: Tensor | None = None,
) -> Tensor:
    """Allowed mask from absolute positions, for any gathered block of queries and keys.

    ``q_pos`` (..., q, 1) and ``k_pos`` (..., 1, k) broadcast against each other. ``window``: the
    band |q - k| <= window (causal: 0 <= q - k <= window), widened by ``num_global`` leading tokens
    that attend and are attended everywhere (Longformer). ``key_padding`` (batch, ..., 1, k), True =
    padding, already gathered to ``k_pos``; it adds a leading batch dimension to the result.
    """
    allowed = torch.ones((), dtype=torch.bool, device=q_pos.device)
    if window is not None:
        allowed = (q_pos - k_pos).abs() <= window
        if num_global:
            allowed = allowed | (q_pos < num_global) | (k_pos < num_global)
    if causal:
        allowed = allowed & (k_pos <= q_pos)
    allowed = allowed.expand(torch.broadcast_shapes(q_pos.shape, k_pos.shape))
    if key_padding is not None:
        allowed = allowed & ~key_padding
    return allowed
