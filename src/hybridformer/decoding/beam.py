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

from .logits import EosIds, block_repeated_ngrams, eos_list, is_eos, length_penalty
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
    wide = (len(eos_list(eos_id)) + 1) * beam
    last = 1 if at_budget == "stop" else 0  # "stop": the step whose token is the budget's last one ends it
    batch, k = prefix.shape[0], beam
    budget = torch.as_tensor(max_len, device=prefix.device).expand(batch)
    finished: list[list[Hypothesis]] = [[] for _ in range(batch)]

    log_probs, state = scorer.step(state, prefix)  # the prefix is fed once per sentence, not per beam
    expand = torch.arange(batch, device=prefix.device).repeat_interleave(k)
    state = scorer.reorder(state, expand)
    log_probs, history = log_probs.index_select(0, expand), prefix.index_select(0, expand)
    scores = torch.full((batch, k), float("-inf"), device=prefix.device)
    scores[:, 0] = 0.0  # all beams start identical: keep only one of them alive at step 0
    active = torch.arange(batch, device=prefix.device)  # the sentences still searching, as rows of `scores`
    n_prefix, step = prefix.shape[1], 0
    while True:
        vocab = log_probs.shape[-1]
        if no_repeat_ngram > 0:
            log_probs = block_repeated_ngrams(log_probs, history, no_repeat_ngram, eos_id)
        at_limit = budget.index_select(0, active).le(step + last)  # (active,)
        if not last and bool(at_limit.any()):
            only_eos = torch.full_like(log_probs, float("-inf"))
            ends = eos_list(eos_id)
            only_eos[:, ends] = log_probs[:, ends]
            log_probs = torch.where(at_limit.repeat_interleave(k)[:, None], only_eos, log_probs)

        candidates = (scores.reshape(-1, 1) + log_probs).reshape(len(active), k * vocab)
        # (active, wide): with e EOS ids at most e·k of the best (e + 1)·k are EOS, so ≥ k are not
        top_scores, top_index = candidates.topk(wide, dim=1)
        top_beam, top_token = top_index // vocab, top_index % vocab
        eos = is_eos(top_token, eos_id)
        ends = eos | at_limit[:, None] if last else eos
        _finalize(finished, active, history[:, n_prefix:], top_scores, top_beam, top_token, ends, k, step, lenpen,
                  eos_id)

        # The k best non-EOS extensions of each sentence live on.
        rank = torch.arange(wide, device=prefix.device)
        keep = (eos.long() * wide + rank).argsort(dim=1)[:, :k]
        scores = top_scores.gather(1, keep)
        rows = torch.arange(len(active), device=prefix.device)[:, None] * k + top_beam.gather(1, keep)
        new_tokens = top_token.gather(1, keep)

        done = _done(finished, active, scores, at_limit, budget + 1 - last, step, k, lenpen, early_stopping)
        if bool(done.all()):
            break
        going = ~done
        rows, scores, new_tokens, active = rows[going].reshape(-1), scores[going], new_tokens[going], active[going]
        state = scorer.reorder(state, rows)
        history = torch.cat([history.index_select(0, rows), new_tokens.reshape(-1, 1)], 1)
        log_probs, state = scorer.step(state, new_tokens.reshape(-1, 1))
        step += 1
    # A sentence whose every extension was banned ends with nothing rather than failing the batch.
    return [max(hyps, key=lambda h: h.score) if hyps else Hypothesis([], float("-inf"), float("-inf"))
            for hyps in finished]


def _finalize(finished: list[list[Hypothesis]], active: Tensor, generated: Tensor, top_scores: Tensor,
              top_beam: Tensor, top_token: Tensor, ends: Tensor, k: int, step: int, lenpen: float,
              eos_id: EosIds) -> None:
    """Record the extensions that end (EOS, or the budget's last token under ``at_budget="stop"``) and rank
    among a sentence's top ``k`` (fairseq's and transformers' rule) as finished."""
    ended = (ends[:, :k] & top_scores[:, :k].isfinite()).nonzero().tolist()
    if not ended:
        return
    divisor = float(length_penalty(torch.tensor(step + 1), lenpen))  # length counts the EOS
    eos = eos_list(eos_id)
    for a, r in ended:
        log_prob = float(top_scores[a, r])
        tokens = generated[a * k + int(top_beam[a, r])].tolist()
        token = int(top_token[a, r])
        finished[int(active[a])].append(Hypothesis(tokens + ([] if token in eos else [token]),
                                                   log_prob / divisor, log_prob))


def _done(finished: list[list[Hypothesis]], active: Tensor, live_scores: Tensor, at_limit: Tensor, longest: Tensor,
          step: int, k: int, lenpen: float, early_stopping: bool) -> Tensor:
    """Which active sentences are over: at their length budget, out of live hypotheses, or unbeatable.
    ``longest``: per sentence, the length (as the penalty counts it) of its longest possible hypothesis."""
    done = at_limit | ~live_scores[:, 0].isfinite()
    for a, sentence in enumerate(active.tolist()):
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
