"""Greedy decoding over any Scorer."""

from __future__ import annotations

import torch
from torch import Tensor

from .scorer import Scorer


@torch.no_grad()
def greedy_search(scorer: Scorer, state, prefix: Tensor, *, eos_id: int, max_new_tokens: int) -> list[list[int]]:
    """Feed ``prefix`` (batch, n) — BOS for seq2seq, the prompt for an LM — then pick the argmax.

    Returns each row's new tokens, without the final EOS.
    """
    batch = prefix.shape[0]
    finished = torch.zeros(batch, dtype=torch.bool, device=prefix.device)
    outputs: list[Tensor] = []
    tokens = prefix
    for _ in range(max_new_tokens):
        log_probs, state = scorer.step(state, tokens)
        next_token = log_probs.argmax(-1)
        next_token = next_token.masked_fill(finished, eos_id)
        outputs.append(next_token)
        finished |= next_token.eq(eos_id)
        if bool(finished.all()):
            break
        tokens = next_token[:, None]
    return [strip_after_eos(row, eos_id) for row in torch.stack(outputs, 1).tolist()] if outputs else [[]] * batch


def strip_after_eos(tokens: list[int], eos_id: int) -> list[int]:
    return tokens[: tokens.index(eos_id)] if eos_id in tokens else tokens
