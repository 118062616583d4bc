"""Batched beam search over any Scorer (Sutskever et al., 2014; the bookkeeping follows fairseq,
Ott et al., 2019).

All sentences of a batch search together: ``batch × beam`` rows go through the scorer at each
step, the best ``2 · beam`` extensions of each sentence are ranked at once with one ``topk``,
and the scorer's incremental state is reordered to the surviving rows. A sentence leaves the
batch (its rows are dropped from the state) as soon as its search is over, so a batch costs
what its slowest sentence needs, on a shrinking number of rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from .logits import EosIds, best_extensions, block_repeated_ngrams, eos_list, length_penalty
from .scorer import Scorer

AtBudget = Literal["eos", "stop"]


@dataclass
class Hypothesis:
    tokens: list[int]  # the output, without EOS
    score: float  # log_prob / length ** lenpen: what the search ranks by
    log_prob: float  # summed log-probability of tokens + EOS


@torch.no_grad()
def beam_search(
    scorer: Scorer, state, prefix: Tensor, *, beam: int, eos_id: EosIds, max_len: int | Tensor,
    lenpen: float = 1.0, early_stopping: bool = True, no_repeat_ngram: int = 0, at_budget: AtBudget = "eos",
) -> list[Hypothesis]:
    """The best finished hypothesis of each row of ``prefix`` (batch, n) — BOS, or an LM prompt.

    ``max_len``: an int, or a (batch,) tensor of budgets (e.g. :func:`~hybridformer.decoding.logits.max_lengths`).
    ``at_budget`` says what the budget means:

    - ``"eos"`` (fairseq): at most ``max_len`` tokens before EOS; at the budget EOS is forced, and
      its log-probability counts in the hypothesis' score (its length, ``max_len + 1``, counts the EOS).
    - ``"stop"`` (``transformers``' ``max_new_tokens``): at most ``max_len`` new tokens, EOS
      included; the best ``beam`` extensions of the last step end there as they are (no EOS
      appended or scored), with length ``max_len``, and compete with the hypotheses finished by EOS.

    ``early_stopping=True`` ends a sentence once ``beam`` hypotheses are finished (fairseq, and
    ``transformers``' ``early_stopping=True``); ``False`` goes on until no live hypothesis can still
    beat the ``beam`` best finished ones, which makes the search exact for the beam's candidate set
    (``transformers``' ``early_stopping="never"``; its default ``False`` is a heuristic not offered here).
    """
    if at_budget not in ("eos", "stop"):
        raise ValueError(f"at_budget must be 'eos' or 'stop', got {at_budget!r}")
    device, ends = prefix.device, eos_list(eos_id)
    eos_ids = torch.tensor(ends, device=device)
    wide = (len(ends) + 1) * beam
    last = 1 if at_budget == "stop" else 0  # "stop": the step whose token is the budget's last one ends it
    batch, k = prefix.shape[0], beam
    budget = torch.as_tensor(max_len, device=device).expand(batch)
    longest = budget + 1 - last  # the length (as the penalty counts it) of a sentence's longest hypothesis
    finished: list[list[Hypothesis]] = [[] for _ in range(batch)]

    log_probs, state = scorer.step(state, prefix)  # the prefix is fed once per sentence, not per beam
    expand = torch.arange(batch, device=device).repeat_interleave(k)
    state = scorer.reorder(state, expand)
    log_probs, history = log_probs.index_select(0, expand), prefix.index_select(0, expand)
    scores = torch.full((batch, k), float("-inf"), device=device)
    scores[:, 0] = 0.0  # all beams start identical: keep only one of them alive at step 0
    # The sentences still searching (rows of `scores`) and their budgets; the nearest budget is known on the host,
    # so a step before it spends no operation on budgets.
    active, active_budget = list(range(batch)), budget
    nearest = int(budget.min())
    first_rows = torch.arange(batch, device=device)[:, None] * k
    n_prefix, step = prefix.shape[1], 0
    while True:
        vocab = log_probs.shape[-1]
        if no_repeat_ngram > 0:
            log_probs = block_repeated_ngrams(log_probs, history, no_repeat_ngram, eos_id)
        at_limit = active_budget.le(step + last) if step + last >= nearest else None  # (active,) or None: none is
        if at_limit is not None and not last:
            only_eos = torch.full_like(log_probs, float("-inf"))
            only_eos[:, ends] = log_probs[:, ends]
            log_probs = torch.where(at_limit.repeat_interleave(k)[:, None], only_eos, log_probs)

        # (active, wide): with e EOS ids at most e·k of the best (e + 1)·k are EOS, so ≥ k are not
        top_scores, top_index = best_extensions(log_probs, scores, wide)
        eos = torch.isin(top_index % vocab, eos_ids)
        _finalize(finished, active, history[:, n_prefix:], top_scores, top_index, vocab,
                  eos | at_limit[:, None] if last and at_limit is not None else eos, k, step, lenpen, ends)

        # The k best non-EOS extensions of each sentence live on (a stable sort puts them first, in rank order).
        keep = eos.sort(dim=1, stable=True).indices[:, :k]
        scores, kept = top_scores.gather(1, keep), top_index.gather(1, keep)
        rows, new_tokens = first_rows[: len(active)] + kept // vocab, kept % vocab

        done = _done(finished, active, scores, at_limit, longest, step, k, lenpen, early_stopping)
        if all(done):
            break
        if any(done):  # those sentences leave the batch
            going = torch.tensor([not d for d in done], device=device)
            rows, scores, new_tokens = rows[going], scores[going], new_tokens[going]
            active_budget = active_budget[going]
            active = [sentence for sentence, d in zip(active, done, strict=True) if not d]
            nearest = int(active_budget.min())
        rows = rows.reshape(-1)
        state = scorer.reorder(state, rows)
        history = torch.cat([history.index_select(0, rows), new_tokens.reshape(-1, 1)], 1)
        log_probs, state = scorer.step(state, new_tokens.reshape(-1, 1))
        step += 1
    # A sentence whose every extension was banned ends with nothing rather than failing the batch.
    return [max(hyps, key=lambda h: h.score) if hyps else Hypothesis([], float("-inf"), float("-inf"))
            for hyps in finished]


def _finalize(finished: list[list[Hypothesis]], active: list[int], generated: Tensor, top_scores: Tensor,
              top_index: Tensor, vocab: int, ends: Tensor, k: int, step: int, lenpen: float, eos: list[int]) -> None:
    """Record the extensions that end (EOS, or the budget's last token under ``at_budget="stop"``) and rank
    among a sentence's top ``k`` (fairseq's and transformers' rule) as finished."""
    ended = (ends[:, :k] & top_scores[:, :k].isfinite()).nonzero().tolist()
    if not ended:
        return
    divisor = float(length_penalty(torch.tensor(step + 1), lenpen))  # length counts the EOS
    for a, r in ended:
        log_prob = float(top_scores[a, r])
        beam, token = divmod(int(top_index[a, r]), vocab)
        tokens = generated[a * k + beam].tolist()
        finished[active[a]].append(Hypothesis(tokens + ([] if token in eos else [token]), log_prob / divisor, log_prob))


def _done(finished: list[list[Hypothesis]], active: list[int], live_scores: Tensor, at_limit: Tensor | None,
          longest: Tensor, step: int, k: int, lenpen: float, early_stopping: bool) -> list[bool]:
    """Which active sentences are over: at their length budget, out of live hypotheses, or unbeatable.
    ``longest``: per sentence, the length (as the penalty counts it) of its longest possible hypothesis."""
    over = ~live_scores[:, 0].isfinite()
    done = (over if at_limit is None else over | at_limit).tolist()
    for a, sentence in enumerate(active):
        hyps = finished[sentence]
        if done[a] or len(hyps) < k:
            continue
        if early_stopping:
            done[a] = True
            continue
        # Log-probs only fall as a hypothesis grows, so the best live score bounds every future one;
        # its length-normalised value is largest at the longest (α > 0) or shortest (α ≤ 0) length.
        final_len = int(longest[sentence]) if lenpen > 0 else step + 2
        bound = float(live_scores[a, 0]) / float(length_penalty(torch.tensor(final_len), lenpen))
        kth_best = sorted((h.score for h in hyps), reverse=True)[k - 1]
        done[a] = bound <= kth_best
    return done
