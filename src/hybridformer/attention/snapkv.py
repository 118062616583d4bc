"""SnapKV (Li et al., 2024): the prompt's last queries choose which older keys a sliding window keeps.

At the end of a prompt the last ``observe`` queries (the question) score every earlier key; per kv head the
``keep`` keys they attend most, averaged over a few neighbours so a kept key brings its neighbours' context,
stay in the decoding cache beside the sinks and the window (H2O, Zhang et al., 2023; LoLA): a key hidden
before the window can still be recalled at a fixed memory of ``num_global + keep + window`` keys.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .base import attend_lse, merge_attention

POOL = 7  # keys averaged per score: SnapKV's clustering (a five-digit key and its words); max-pooling ties plateaus


def select_kept(q: Tensor, k: Tensor, *, first: int, end: int, keep: int) -> Tensor:
    """Positions (batch, kv_heads, keep), ascending, of the keys in ``[first, end)`` the queries attend most.

    q (batch, heads, m, head_dim): the last m queries of the prompt whose keys are k (batch, kv_heads, n, head_dim).
    A key's score is the causal softmax weight the queries give it, summed over the m queries and the kv head's
    query heads, then averaged over ``POOL`` neighbouring keys. The scores are (kv_heads, m·group, n): linear
    in the prompt length."""
    batch, heads, m, dim = q.shape
    kv_heads, n = k.shape[1], k.shape[2]
    queries = q.reshape(batch, kv_heads, heads // kv_heads * m, dim)  # a kv head's query heads as its queries
    scores = (queries @ k.transpose(-1, -2)).float() * dim**-0.5  # (batch, kv_heads, group·m, n)
    q_pos = torch.arange(n - m, n, device=q.device).repeat(heads // kv_heads)
    scores.masked_fill_(torch.arange(n, device=q.device) > q_pos[:, None], float("-inf"))
    weights = scores.softmax(-1)[..., first:end].sum(-2)  # (batch, kv_heads, end - first)
    pooled = F.avg_pool1d(weights, POOL, stride=1, padding=POOL // 2)
    return pooled.topk(keep, -1).indices.sort(-1).values + first


def attend_last(q: Tensor, q_prefix: Tensor, k: Tensor, v: Tensor, kept_k: Tensor, kept_v: Tensor, kept: Tensor, *,
                sinks: int, window: int) -> Tensor:
    """The prompt's last query q (batch, heads, 1, head_dim), at position n - 1 of k, v: the sinks and the kept keys
    (at positions ``kept``) older than its window, seen through ``q_prefix`` (the query at its cache position, or q
    itself), merged by log-sum-exp with its window of k, v."""
    n, group = k.shape[2], q.shape[1] // k.shape[1]
    older = kept[:, :, None, :] < n - 1 - window  # (batch, kv_heads, 1, keep)
    allowed = torch.cat([older.new_ones(*older.shape[:3], sinks), older], -1).repeat_interleave(group, 1)
    prefix_k, prefix_v = torch.cat([k[:, :, :sinks], kept_k], 2), torch.cat([v[:, :, :sinks], kept_v], 2)
    mask = torch.zeros(allowed.shape, dtype=q.dtype, device=q.device).masked_fill(~allowed, float("-inf"))
    out, lse = attend_lse(q_prefix, prefix_k, prefix_v, mask)
    lse = lse.masked_fill(~allowed.any(-1), float("-inf"))  # nothing to see (no sinks, every kept key in the window)
    lo = max(sinks, n - 1 - window)
    return merge_attention(out, lse, *attend_lse(q, k[:, :, lo:], v[:, :, lo:]))


def gather_keys(x: Tensor, positions: Tensor) -> Tensor:
    """x (batch, kv_heads, n, d) at ``positions`` (batch, kv_heads, keep) -> (batch, kv_heads, keep, d)."""
    return x.gather(2, positions[..., None].expand(-1, -1, -1, x.shape[-1]))

