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
    """A padding mask with no padding is no mask (lets kernels take their unmasked fast path)."""
    if key_padding_mask is None or not bool(key_padding_mask.any()):
        return None
    return key_padding_mask
