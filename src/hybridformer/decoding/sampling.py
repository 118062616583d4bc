"""Ancestral sampling with temperature, top-k (Fan et al., 2018) and nucleus / top-p
(Holtzman et al., 2020) truncation, over any Scorer."""

from __future__ import annotations

import torch
from torch import Tensor

from .greedy import token_loop
from .logits import EosIds, top_k_filter, top_p_filter
from .scorer import Scorer


def sample_tokens(log_probs: Tensor, *, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0,
                  generator: torch.Generator | None = None) -> Tensor:
    """Draw one token per row from ``softmax(log_probs / temperature)`` after top-k, then top-p truncation."""
    logits = top_p_filter(top_k_filter(log_probs / temperature, top_k), top_p)
    return torch.multinomial(logits.softmax(-1), 1, generator=generator).squeeze(-1)


def sample_search(
    scorer: Scorer, state, prefix: Tensor, *, eos_id: EosIds, max_new_tokens: int | Tensor,
    temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0, no_repeat_ngram: int = 0,
    generator: torch.Generator | None = None, forced: Tensor | None = None,
) -> list[list[int]]:
    """Sample each row's continuation token by token; ``generator`` makes it reproducible (``forced``: as in
    :func:`~.greedy.token_loop`)."""

    def pick(log_probs: Tensor) -> Tensor:
        return sample_tokens(log_probs, temperature=temperature, top_k=top_k, top_p=top_p, generator=generator)

    return token_loop(scorer, state, prefix, pick, eos_id=eos_id, max_new_tokens=max_new_tokens,
                      no_repeat_ngram=no_repeat_ngram, forced=forced)
