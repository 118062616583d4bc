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

from typing import Any

import torch
from torch import Tensor

from .rows import RowEmitter


class RaggedPrompts:
    """A Scorer over prompts of different lengths: the longer ones' tails are forced token by token."""

    def __init__(self, inner: Any, sources: list[list[int]], emitter: RowEmitter) -> None:
        self.inner, self.emitter = inner, emitter
        self.start = min(len(s) for s in sources)
        self.tails = [s[self.start:] for s in sources]
        self.steps = 0

    def prefix(self, sources: list[list[int]], device: torch.device) -> Tensor:
        """What the loop feeds first: every prompt up to the shortest one's length."""
        return torch.tensor([s[: self.start] for s in sources], dtype=torch.long, device=device)

    def init_state(self, src: Tensor | None) -> Any:
        return self.inner.init_state(src)

    def step(self, state: Any, prev_tokens: Tensor) -> tuple[Tensor, Any]:
        if self.steps > 0:  # the loop feeds back what it chose at the previous step
            chosen = self.steps - 1
            for row, token in enumerate(prev_tokens[:, -1].tolist()):
                if chosen >= len(self.tails[row]):
                    self.emitter.token(row, token)
        log_probs, state = self.inner.step(state, prev_tokens)
        for row, tail in enumerate(self.tails):
            if self.steps < len(tail):  # still inside this row's prompt: its next prompt token, surely
                log_probs[row] = float("-inf")
                log_probs[row, tail[self.steps]] = 0.0
        self.steps += 1
        return log_probs, state

    def reorder(self, state: Any, beam_index: Tensor) -> Any:
        return self.inner.reorder(state, beam_index)
