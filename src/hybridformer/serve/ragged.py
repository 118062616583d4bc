"""Language-model prompts of different lengths in one batch, with every output token handed over as it is chosen.

The torch engine decodes an LM batch from one offset (no per-row positions, no left padding), so
:class:`RaggedPrompts` does what CTranslate2's ``Generator`` does with ``include_prompt_in_result=False``:
the tokens up to the shortest prompt are fed at once, and each longer prompt's remaining tokens are
forced one step at a time (its log-probabilities become one-hot on the prompt's next token) while
the shorter rows already generate. Every row then sees exactly its own tokens at its own positions,
with no padding anywhere, so each output equals the one the prompt gets alone. It is a
:class:`~hybridformer.decoding.Scorer` wrapper, so the ordinary greedy and sampling loops run it,
and it hands every chosen token to ``emit(row, token)`` as the loop feeds it back — streaming comes
out of the same pass.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from ..data.text import token_batches
from ..decoding import greedy_search, sample_search
from ..decoding.logits import penalized
from ..generation import output_budget

# (row, token id, the row's log-probabilities at the step that chose it or None) -> True: end this row now
Emit = Callable[[int, int, Tensor | None], bool | None]


class RowEmitter:
    """Hands each row's output tokens to ``emit`` once each, in order, up to the row's EOS or budget; a row whose
    ``emit`` answers True (a stop string showed up) is ``stopped``: the engine ends it at the next step."""

    def __init__(self, emit: Emit | None, budgets: list[int], eos_id: int, rows: list[int] | None = None) -> None:
        self.emit, self.budgets, self.eos_id = emit, budgets, eos_id
        self.rows = rows if rows is not None else list(range(len(budgets)))  # local row -> caller's row
        self.sent = [0] * len(budgets)
        self.ended = [b <= 0 for b in budgets]
        self.stopped: set[int] = set()

    def token(self, row: int, token: int, log_probs: Tensor | None = None) -> bool:
        """Hand ``token`` over; True when the row must end (its budget, EOS, or the caller's stop)."""
        if self.ended[row]:
            return True
        if token == self.eos_id:
            self.ended[row] = True
            return True
        self.sent[row] += 1
        self.ended[row] = self.sent[row] >= self.budgets[row]
        if self.emit is not None and self.emit(self.rows[row], token, log_probs):
            self.ended[row] = True
            self.stopped.add(row)
        return self.ended[row]

    def flush(self, outputs: list[list[int]], log_probs: Tensor | None = None) -> None:
        """The tokens of the final outputs not handed over yet (the last step's, which no step fed back;
        ``log_probs``: that step's distributions, one row per output)."""
        for row, ids in enumerate(outputs):
            for token in ids[self.sent[row]:]:
                self.ended[row] = False
                self.token(row, token, None if log_probs is None else log_probs[row])


class RaggedPrompts:
    """A Scorer over prompts of different lengths: the longer ones' tails are forced token by token, a row the
    emitter stopped is forced to EOS, and the OpenAI presence/frequency penalties lower the log-probabilities
    of tokens the row has generated (not its prompt's)."""

    def __init__(self, inner: Any, sources: list[list[int]], emitter: RowEmitter, *, presence: float = 0.0,
                 frequency: float = 0.0) -> None:
        self.inner, self.emitter = inner, emitter
        self.start = min(len(s) for s in sources)
        self.tails = [s[self.start:] for s in sources]
        self.steps = 0
        self.presence, self.frequency = presence, frequency
        self.counts: Tensor | None = None  # (rows, vocab) generated tokens so far, with penalties
        self.last: Tensor | None = None  # (rows, vocab) the model's log-probabilities at the last step

    def prefix(self, sources: list[list[int]], device: torch.device) -> Tensor:
        """What the loop feeds first: every prompt up to the shortest one's length."""
        return torch.tensor([s[: self.start] for s in sources], dtype=torch.long, device=device)

    def init_state(self, src: Tensor | None) -> Any:
        return self.inner.init_state(src)

    def step(self, state: Any, prev_tokens: Tensor) -> tuple[Tensor, Any]:
        if self.steps > 0:  # the loop feeds back what it chose at the previous step
            chosen = self.steps - 1
            for row, token in enumerate(prev_tokens[:, -1].tolist()):
                if chosen >= len(self.tails[row]) and not self.emitter.ended[row]:
                    self.emitter.token(row, token, self.last[row])
                    if self.counts is not None:
                        self.counts[row, token] += 1
        log_probs, state = self.inner.step(state, prev_tokens)
        self.last = log_probs
        if self.presence or self.frequency:
            if self.counts is None:
                self.counts = torch.zeros_like(log_probs)
            log_probs = penalized(log_probs, self.counts, self.presence, self.frequency)
        forced = {row: tail[self.steps] for row, tail in enumerate(self.tails) if self.steps < len(tail)}
        forced |= {row: self.emitter.eos_id for row in self.emitter.stopped}
        if forced:  # a prompt's next token, or EOS after a stop string: surely
            log_probs = log_probs.clone()
            for row, token in forced.items():
                log_probs[row] = float("-inf")
                log_probs[row, token] = 0.0
        self.steps += 1
        return log_probs, state

    def finish(self, found: list[list[int]]) -> list[list[int]]:
        """The rows' outputs without their forced prompt tails; hands over the tokens no step fed back."""
        found = [ids[len(tail):] for ids, tail in zip(found, self.tails, strict=True)]
        self.emitter.flush(found, self.last)
        return found

    def reorder(self, state: Any, beam_index: Tensor) -> Any:
        return self.inner.reorder(state, beam_index)


def lm_budgets(cfg, sources: list[list[int]], opts) -> list[int]:
    """Each prompt's output budget, as the torch engine computes it for a prompt alone."""
    return [int(output_budget(cfg, opts, torch.tensor([len(s)]), prefix_len=len(s), src_len=len(s))) for s in sources]


def ragged_ok(opts, sources: list[list[int]] | None = None, eos_id: int | None = None) -> bool:
    """Prompts of any lengths may share a batch: greedy search without n-gram blocking (which could block a
    forced prompt token), and no EOS inside a prompt (a forced EOS would end the row)."""
    if opts.sample or opts.beam_size != 1 or opts.no_repeat_ngram:
        return False
    return sources is None or not any(eos_id in s[1:] for s in sources)


def decode_lm(decoder, sources: list[list[int]], opts, generator: torch.Generator | None = None,
              emit: Emit | None = None) -> list[list[int]]:
    """Outputs of a torch-engine LM batch (greedy or sampling), each token also handed to ``emit(row, token)``
    as soon as it is chosen. Greedy batches mix prompt lengths; sampling keeps ``generate``'s equal-length
    groups, so a seeded sample draws the same random numbers as there."""
    cfg = decoder.config
    lengths = [len(s) for s in sources]
    groups = token_batches(lengths, opts.batch_tokens, same_length=not ragged_ok(opts, sources, cfg.eos_id))
    outputs: dict[int, list[int]] = {}
    for rows in groups:
        batch = [sources[r] for r in rows]
        emitter = RowEmitter(emit, lm_budgets(cfg, batch, opts), cfg.eos_id, rows)
        ragged = RaggedPrompts(decoder.scorer, batch, emitter, presence=opts.presence_penalty,
                               frequency=opts.frequency_penalty)
        tails = [len(t) for t in ragged.tails]
        budget = torch.tensor([t + b for t, b in zip(tails, emitter.budgets, strict=True)], device=decoder.device)
        common = {"eos_id": cfg.eos_id, "max_new_tokens": budget, "no_repeat_ngram": opts.no_repeat_ngram}
        prefix = ragged.prefix(batch, decoder.device)
        if opts.sample:
            found = sample_search(ragged, ragged.init_state(None), prefix, temperature=opts.temperature,
                                  top_k=opts.top_k, top_p=opts.top_p, generator=generator, **common)
        else:
            found = greedy_search(ragged, ragged.init_state(None), prefix, **common)
        outputs.update(zip(rows, ragged.finish(found), strict=True))
    return [outputs[i] for i in range(len(sources))]
