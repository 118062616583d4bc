"""Label-smoothed cross-entropy (Szegedy et al., 2016), as used for Transformer training (Vaswani et al., 2017)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def label_smoothed_nll(logits: Tensor, target: Tensor, *, epsilon: float, ignore_index: int,
                       ) -> tuple[Tensor, Tensor, Tensor]:
    """Summed losses over non-ignored tokens.

    logits: (..., vocab), target: (...). Returns ``(loss_sum, nll_sum, n_tokens)`` where the
    smoothed loss is ``(1 - eps) * nll + eps * mean_over_vocab(-log p)`` — the same quantity as
    ``F.cross_entropy(label_smoothing=eps)`` — and ``nll_sum`` is the plain negative log-likelihood
    (for validation loss and perplexity). Computed in float32 whatever the autocast dtype.
    """
    lprobs = F.log_softmax(logits.float(), dim=-1)
    keep = target.ne(ignore_index)
    safe_target = target.masked_fill(~keep, 0)
    nll = -lprobs.gather(-1, safe_target.unsqueeze(-1)).squeeze(-1)
    smooth = -lprobs.mean(dim=-1)
    keep_f = keep.to(lprobs.dtype)
    nll_sum = (nll * keep_f).sum()
    loss_sum = (1.0 - epsilon) * nll_sum + epsilon * (smooth * keep_f).sum()
    return loss_sum, nll_sum, keep.sum()


def token_count(target: Tensor, ignore_index: int) -> int:
    return int(torch.count_nonzero(target.ne(ignore_index)))
