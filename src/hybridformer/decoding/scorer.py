"""The Scorer protocol: all decoding needs from a model (or an ensemble of models)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import Tensor, nn

from ..cache import DecodingCache
from .compiled import CompiledDecode


class Scorer(Protocol):
    """``init_state(src)``, ``step(state, prev_tokens) -> (log_probs, state)``, ``reorder(state, index)``.

    ``init_state(None, start=...)`` starts a language model on left-padded prompts of different lengths
    (row r's prompt begins at column ``start[r]``; see :class:`~hybridformer.cache.DecodingCache`), which
    the model can take when ``left_padding`` is True.
    """

    left_padding: bool

    def init_state(self, src: Tensor | None, start: Tensor | None = None) -> Any: ...

    def step(self, state: Any, prev_tokens: Tensor) -> tuple[Tensor, Any]: ...

    def reorder(self, state: Any, beam_index: Tensor) -> Any: ...


PREFILL_CHUNK = 4096  # prompt tokens a language model takes in one pass


@dataclass
class ModelState:
    cache: DecodingCache
    offset: int = 0  # tokens already fed
    memory: Tensor | None = None  # encoder output (seq2seq)
    memory_padding_mask: Tensor | None = None


class ModelScorer:
    """One model as a Scorer: incremental decoding through its caches, never recomputing the prefix.

    Every search reads only the next-token distribution, so each step (the prompt pass included)
    asks the model for the logits of the last position alone (``logits_to_keep=1``): the one
    place this is decided for greedy, sampling, beam search and ensembles alike.
    ``compile=True`` runs the one-token steps through ``torch.compile`` (:class:`CompiledDecode`).
    """

    def __init__(self, model: nn.Module, *, compile: bool = False) -> None:
        self.model = model.eval()
        self.seq2seq = hasattr(model, "encode") and hasattr(model, "tgt_embed")
        self.shared: dict = {}  # per-model decoding constants reused across sessions (DecodingCache.shared)
        self.decode = CompiledDecode(model) if compile else model.decode
        # every module that places tokens by column (AttentionKernel.left_padding) must take left padding
        self.left_padding = not self.seq2seq and all(getattr(m, "left_padding", True) for m in model.modules())

    @torch.no_grad()
    def init_state(self, src: Tensor | None = None, start: Tensor | None = None) -> ModelState:
        if not self.seq2seq:
            return ModelState(DecodingCache(self.shared, start))
        if src is None:
            raise ValueError("a sequence-to-sequence model needs a source batch to decode")
        memory, mask = self.model.encode(src)
        return ModelState(DecodingCache(self.shared), 0, memory, mask)

    @torch.no_grad()
    def step(self, state: ModelState, prev_tokens: Tensor) -> tuple[Tensor, ModelState]:
        """prev_tokens: (batch, n) tokens not yet fed -> log-probs of the next token (batch, vocab)."""
        decode = self.decode if prev_tokens.shape[1] == 1 and state.offset else self.model.decode  # prompts: eager
        if self.seq2seq:
            logits = decode(prev_tokens, state.memory, state.memory_padding_mask,
                            cache=state.cache, offset=state.offset, logits_to_keep=1)
            # Each cross-attention now holds the source's keys/values (StaticKV): the encoder output is
            # never read again, so it is dropped rather than reordered at every beam step.
            state.memory = state.memory_padding_mask = None
        else:  # a long prompt goes in chunks through the cache: exact, and its activations stay O(chunk)
            for start in range(0, prev_tokens.shape[1], PREFILL_CHUNK):
                chunk = prev_tokens[:, start : start + PREFILL_CHUNK]
                logits = decode(chunk, cache=state.cache, offset=state.offset, logits_to_keep=1)
                state.offset += chunk.shape[1]
            return output_log_probs(logits[:, -1], self.model.pad_id), state
        state.offset += prev_tokens.shape[1]
        return output_log_probs(logits[:, -1], self.model.pad_id), state

    def join(self, state: ModelState, other: ModelState) -> ModelState:
        """A language model's running rows with ``other``'s appended (both started with ``start``). Columns that
        are padding in every row (their rows left) are dropped first, so a batch that runs for ever stays as wide
        as its longest row."""
        state.offset -= state.cache.trim()
        other.offset -= other.cache.trim()
        state.cache.join(other.cache, state.offset, other.offset)
        state.offset = max(state.offset, other.offset)
        return state

    def reorder(self, state: ModelState, beam_index: Tensor) -> ModelState:
        state.cache.reorder(beam_index)
        if state.memory is not None:
            state.memory = state.memory.index_select(0, beam_index)
            state.memory_padding_mask = state.memory_padding_mask.index_select(0, beam_index)
        return state


def output_log_probs(logits: Tensor, pad_id: int) -> Tensor:
    """Log-probabilities over real outputs: padding is never generated, so it gets no mass at all
    (a pad id outside the vocabulary, GPT-2's, has no logit to begin with)."""
    if pad_id >= logits.shape[-1]:
        return torch.log_softmax(logits.float(), dim=-1)
    pad = torch.tensor([pad_id], device=logits.device)
    return torch.log_softmax(logits.float().index_fill(-1, pad, float("-inf")), dim=-1)
