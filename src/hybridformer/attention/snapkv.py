"""SnapKV (Li et al., 2024): the prompt's last queries choose which older keys a sliding window keeps.

The last ``observe`` queries of a prompt (the question) attend their whole past, as in SnapKV's full prefill;
per kv head the ``keep`` older keys they attend most, averaged over a few neighbours so a kept key brings its
neighbours' context, stay in the decoding cache beside the sinks and the window (H2O, Zhang et al., 2023; LoLA):
a key hidden before the window can still be recalled at a fixed memory of ``num_global + keep + window`` keys.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

POOL = 7  # keys averaged per score: SnapKV's clustering (a five-digit key and its words); max-pooling ties plateaus


def observe(q: Tensor, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
    """The last m queries q (batch, heads, m, head_dim) of a prompt whose keys are k, v (batch, kv_heads, n, head_dim)
    attend their whole past causally. Returns their output (batch, heads, m, head_dim) and each key's weight summed
    over the m queries and the kv head's query heads (batch, kv_heads, n). Scores are (heads · m · n) floats:
    linear in the prompt length."""
    batch, heads, m, dim = q.shape
    kv_heads, n = k.shape[1], k.shape[2]
    queries = q.reshape(batch, kv_heads, heads // kv_heads * m, dim)  # a kv head's query heads as its queries
    scores = (queries.float() @ k.float().transpose(-1, -2)) * dim**-0.5  # (batch, kv_heads, group·m, n)
    q_pos = torch.arange(n - m, n, device=q.device).repeat(heads // kv_heads)
    weights = scores.masked_fill_(torch.arange(n, device=q.device) > q_pos[:, None], float("-inf")).softmax(-1)
    out = (weights.to(v.dtype) @ v).reshape(batch, heads, m, v.shape[-1])
    return out, weights.sum(-2)


def select_kept(weights: Tensor, *, first: int, end: int, keep: int) -> Tensor:
    """Positions (batch, kv_heads, keep), ascending, of the ``keep`` keys in ``[first, end)`` of highest weight
    (from :func:`observe`) averaged over ``POOL`` neighbouring keys."""
    pooled = F.avg_pool1d(weights[..., first:end], POOL, stride=1, padding=POOL // 2)
    return pooled.topk(keep, -1).indices.sort(-1).values + first


def gather_keys(x: Tensor, positions: Tensor) -> Tensor:
    """x (batch, kv_heads, n, d) at ``positions`` (batch, kv_heads, keep) -> (batch, kv_heads, keep, d)."""
    return x.gather(2, positions[..., None].expand(-1, -1, -1, x.shape[-1]))
