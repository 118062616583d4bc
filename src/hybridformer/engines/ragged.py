"""Language-model prompts of different lengths in one batch, with every output token handed over as it is chosen.

:class:`RaggedPrompts` is a :class:`~hybridformer.decoding.Scorer` wrapper, so the ordinary greedy and
sampling loops run it, and it hands every chosen token to ``emit(row, token, log_probs)`` as the loop feeds
it back — streaming comes out of the same pass. It also ends a row the caller stops (a stop string: forced to
EOS) and applies OpenAI's presence/frequency penalties to the tokens each row generated.

Where the model takes left padding (``scorer.left_padding``), the prompts are left-padded and prefilled
together in one pass (:meth:`~hybridformer.engines.torch.TorchEngine.prefill`). Otherwise (sinks, BigBird
blocks, dynamic RoPE) it does what CTranslate2's ``Generator`` does with ``include_prompt_in_result=False``:
the tokens up to the shortest prompt are fed at once, and each longer prompt's remaining tokens are forced one
step at a time while the shorter rows already generate. Either way each output equals the prompt's alone.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ..decoding.greedy import strip_after_eos
from ..decoding.logits import penalized
from .rows import RowEmitter


class RaggedPrompts:
    """A Scorer over prompts of different lengths: the longer ones' ``tails`` are forced token by token (none
    when the prompts were left-padded), a row the emitter stopped is forced to EOS, and the OpenAI
    presence/frequency penalties lower the log-probabilities of tokens the row has generated (not its prompt's)."""

    def __init__(self, inner: Any, tails: list[list[int]], emitter: RowEmitter, *, start: Tensor | None = None,
                 presence: float = 0.0, frequency: float = 0.0) -> None:
        self.inner, self.emitter, self.start = inner, emitter, start  # start: left-padded prompts (DecodingCache)
        self.tails = tails  # each prompt's tokens after the part fed at once
        self.steps = 0
        self.presence, self.frequency = presence, frequency
        self.counts: Tensor | None = None  # (rows, vocab) generated tokens so far, with penalties
        self.last: Tensor | None = None  # (rows, vocab) the model's log-probabilities at the last step

    def init_state(self, src: Tensor | None) -> Any:
        return self.inner.init_state(src, self.start)

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
        """The rows' outputs without their forced prompt tails, up to their first EOS of any kind; hands over the
        tokens no step fed back."""
        found = [strip_after_eos(ids[len(tail):], self.emitter.eos_ids) for ids, tail in zip(found, self.tails,
                                                                                              strict=True)]
        self.emitter.flush(found, self.last)
        return found

    def reorder(self, state: Any, beam_index: Tensor) -> Any:
        return self.inner.reorder(state, beam_index)
