"""Token-by-token decoding over any Scorer: greedy, and the loop sampling shares with it."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from .logits import EosIds, argmax_rows, block_repeated_ngrams, eos_list, is_eos
from .scorer import Scorer

Pick = Callable[[Tensor], Tensor]  # log-probs (rows, vocab) -> chosen token per row (rows,)


@torch.no_grad()
def token_loop(
    scorer: Scorer, state, prefix: Tensor, pick: Pick, *, eos_id: EosIds, max_new_tokens: int | Tensor,
    no_repeat_ngram: int = 0, forced: Tensor | None = None,
) -> list[list[int]]:
    """Feed ``prefix`` (batch, n) — BOS for seq2seq, the prompt for an LM — then extend every row
    one chosen token at a time through the scorer's incremental state (the prefix is never re-fed).

    ``max_new_tokens``: one budget for all rows, or a (batch,) tensor of per-row budgets.
    ``eos_id``: one id or several (any of them ends a row). ``forced`` (batch,): each row's first steps whose
    tokens the scorer forces (a longer prompt's tail, fed step by step): an EOS among them is prompt, not an end.
    Returns each row's new tokens (the forced ones included), without the final EOS.
    """
    batch = prefix.shape[0]
    budget = torch.as_tensor(max_new_tokens, device=prefix.device).expand(batch)
    forced = torch.zeros(batch, dtype=torch.long, device=prefix.device) if forced is None else forced
    finished = budget.le(0)
    history, tokens = prefix, prefix
    generated: list[Tensor] = []
    for step in range(int(budget.max())):
        if bool(finished.all()):
            break
        log_probs, state = scorer.step(state, tokens)
        if no_repeat_ngram > 0:
            log_probs = block_repeated_ngrams(log_probs, history, no_repeat_ngram, eos_id)
        next_token = pick(log_probs).masked_fill(finished, eos_list(eos_id)[0])
        generated.append(next_token)
        finished |= (is_eos(next_token, eos_id) & forced.le(step)) | budget.le(step + 1)
        tokens = next_token[:, None]
        if no_repeat_ngram > 0:
            history = torch.cat([history, tokens], 1)
    if not generated:
        return [[] for _ in range(batch)]
    rows = torch.stack(generated, 1).tolist()
    return [row[:skip] + strip_after_eos(row[skip:limit], eos_id)
            for row, limit, skip in zip(rows, budget.tolist(), forced.tolist(), strict=True)]


def greedy_search(scorer: Scorer, state, prefix: Tensor, *, eos_id: EosIds, max_new_tokens: int | Tensor,
                  no_repeat_ngram: int = 0, forced: Tensor | None = None) -> list[list[int]]:
    """Pick the most likely next token at every step (beam search with one beam, without the bookkeeping)."""
    return token_loop(scorer, state, prefix, argmax_rows, eos_id=eos_id,
                      max_new_tokens=max_new_tokens, no_repeat_ngram=no_repeat_ngram, forced=forced)


def strip_after_eos(tokens: list[int], eos_id: EosIds) -> list[int]:
    """``tokens`` up to (without) the first id that ends a row."""
    ends = set(eos_list(eos_id))
    return next((tokens[:i] for i, token in enumerate(tokens) if token in ends), tokens)
