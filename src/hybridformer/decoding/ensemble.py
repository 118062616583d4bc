"""Ensemble decoding: several models, possibly of different architectures, as one Scorer.

Every member decodes incrementally through its own caches; per step the members' next-token
distributions are combined — by the (weighted) mean of probabilities, the classic ensemble
(Hansen & Salamon, 1990; fairseq's default), or by the mean of log-probabilities renormalised,
a product of experts (Hinton, 2002) that punishes tokens any member finds unlikely. The
members only need one vocabulary, so a Transformer, a Conformer and an LSRA model can be
ensembled; greedy, beam search and sampling run through :class:`Ensemble` unchanged. Loading and
checking the members' checkpoints is :mod:`hybridformer.inference`'s job.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import torch
from torch import Tensor, nn

from ..errors import ConfigError
from .scorer import ModelScorer, Scorer

Combine = Literal["prob", "log_prob"]


class Ensemble:
    """Members (models or Scorers) with weights; ``init_state``/``step``/``reorder`` like one model.

    ``weights`` are relative (normalised to sum 1; default equal); a zero weight silences a member.
    """

    def __init__(self, members: Sequence[nn.Module | Scorer], *, weights: Sequence[float] | None = None,
                 combine: Combine = "prob") -> None:
        if not members:
            raise ConfigError("an ensemble needs at least one member")
        if combine not in ("prob", "log_prob"):
            raise ConfigError(f"ensemble combine must be 'prob' or 'log_prob', got {combine!r}")
        self.members: list[Scorer] = [ModelScorer(m) if isinstance(m, nn.Module) else m for m in members]
        self.weights = member_weights(weights, len(members))
        self.combine = combine
        kinds = {getattr(m, "seq2seq", None) for m in self.members}
        if len(kinds) > 1:
            raise ConfigError("an ensemble cannot mix sequence-to-sequence models with language models")
        self.seq2seq = kinds.pop()
        self.left_padding = all(getattr(m, "left_padding", False) for m in self.members)

    def init_state(self, src: Tensor | None = None, start: Tensor | None = None) -> list[Any]:
        return [member.init_state(src, start) for member in self.members]

    @torch.no_grad()
    def step(self, state: list[Any], prev_tokens: Tensor) -> tuple[Tensor, list[Any]]:
        """prev_tokens: (batch, n) -> combined next-token log-probs (batch, vocab) and the members' states."""
        log_probs, new_state = [], []
        for member, member_state in zip(self.members, state, strict=True):
            lp, member_state = member.step(member_state, prev_tokens)
            log_probs.append(lp)
            new_state.append(member_state)
        shapes = {tuple(lp.shape) for lp in log_probs}
        if len(shapes) > 1:
            raise ConfigError(f"ensemble members disagree on the output shape {sorted(shapes)}; "
                              "members must share one vocabulary")
        return combine_log_probs(torch.stack(log_probs), self.weights, self.combine), new_state

    def join(self, state: list[Any], other: list[Any]) -> list[Any]:
        return [member.join(s, o) for member, s, o in zip(self.members, state, other, strict=True)]

    def reorder(self, state: list[Any], beam_index: Tensor) -> list[Any]:
        return [member.reorder(s, beam_index) for member, s in zip(self.members, state, strict=True)]


def member_weights(weights: Sequence[float] | None, members: int) -> list[float]:
    """Relative ensemble weights checked and normalised to sum 1 (``None``: equal weights)."""
    weights = [1.0] * members if weights is None else [float(w) for w in weights]
    if len(weights) != members:
        raise ConfigError(f"{len(weights)} ensemble weights for {members} members; give one per member")
    if any(w < 0 for w in weights) or sum(weights) <= 0:
        raise ConfigError(f"ensemble weights {weights} must be >= 0 with a positive sum")
    return [w / sum(weights) for w in weights]


def combine_log_probs(log_probs: Tensor, weights: Sequence[float], combine: Combine) -> Tensor:
    """log_probs: (members, batch, vocab) -> (batch, vocab) log of the combined distribution.

    prob: log Σ w_i p_i; log_prob: log_softmax(Σ w_i log p_i). Zero-weight members drop out exactly.
    """
    w = torch.tensor(weights, dtype=log_probs.dtype, device=log_probs.device).view(-1, 1, 1)
    if combine == "prob":
        log_w = torch.tensor([math.log(x) if x > 0 else -math.inf for x in weights],
                             dtype=log_probs.dtype, device=log_probs.device).view(-1, 1, 1)
        return torch.logsumexp(log_probs + log_w, dim=0)
    weighted = torch.where(w > 0, w * log_probs, torch.zeros_like(log_probs))  # 0 · -inf stays 0
    return torch.log_softmax(weighted.sum(0), dim=-1)
