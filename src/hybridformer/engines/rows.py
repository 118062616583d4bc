"""What every engine shares about rows: output budgets handed over token by token, and batching by tokens."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from ..data.text import token_batches
from .options import GenerationOptions

if TYPE_CHECKING:
    from . import Engine

# (row, token id, the row's log-probabilities at the step that chose it or None) -> True: end this row now
Emit = Callable[[int, int, Tensor | None], bool | None]


class RowEmitter:
    """Hands each row's output tokens to ``emit`` once each, in order, up to the row's EOS or budget; a row whose
    ``emit`` answers True (a stop string showed up) is ``stopped``: the engine ends it at the next step.
    ``eos_ids``: every id that ends a row (the model's EOS first, then end-of-turn ids); the search ends those rows
    itself."""

    def __init__(self, emit: Emit | None, budgets: list[int], eos_ids: list[int],
                 rows: list[int] | None = None) -> None:
        self.emit, self.budgets, self.eos_ids = emit, budgets, eos_ids
        self.eos_id = eos_ids[0]
        self.rows = rows if rows is not None else list(range(len(budgets)))  # local row -> caller's row
        self.sent = [0] * len(budgets)
        self.ended = [b <= 0 for b in budgets]
        self.stopped: set[int] = set()

    def token(self, row: int, token: int, log_probs: Tensor | None = None) -> bool:
        """Hand ``token`` over; True when the row must end (its budget, EOS, or the caller's stop)."""
        if self.ended[row]:
            return True
        if token in self.eos_ids:
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


def ragged_ok(opts: GenerationOptions) -> bool:
    """Prompts of any lengths may share a batch: greedy search without n-gram blocking (which could block a
    forced prompt token)."""
    return not (opts.sample or opts.beam_size != 1 or opts.no_repeat_ngram)


def decode_sources(engine: Engine, sources: list[list[int]], opts: GenerationOptions,
                   generator: torch.Generator | None = None) -> list[list[int]]:
    """Output token ids for every source, in order, decoded in length-sorted batches of ``opts.batch_tokens``
    (LM prompts of different lengths share a batch only where the engine decodes them exactly as alone)."""
    outputs: dict[int, list[int]] = {}
    lengths = [len(ids) for ids in sources]
    same_length = not engine.config.is_seq2seq and not engine.ragged(opts, sources)
    for batch in token_batches(lengths, opts.batch_tokens, rows_per_item=opts.beam_size, same_length=same_length):
        found = engine.decode_batch([sources[i] for i in batch], opts, generator)
        outputs.update(zip(batch, found, strict=True))
    return [outputs[i] for i in range(len(sources))]


def stream_rows(engine: Engine, sources: list[list[int]], opts: GenerationOptions,
                generator: torch.Generator | None, emit: Emit | None, groups: list[list[int]]) -> list[list[int]]:
    """Outputs per source, decoded in ``groups`` of rows; the engine hands each token to ``emit(row, token)``
    as soon as it is chosen (greedy search and sampling). Seq2seq and beam search: when its batch is done."""
    cfg = engine.config
    if cfg.is_seq2seq or opts.beam_size != 1:
        outputs = decode_sources(engine, sources, opts, generator)
        RowEmitter(emit, [len(o) for o in outputs], cfg.eos_ids).flush(outputs)
        return outputs
    found: dict[int, list[int]] = {}
    for rows in groups:
        batch = [sources[r] for r in rows]
        emitter = RowEmitter(emit, engine.budgets(batch, opts), cfg.eos_ids, rows)
        outputs = engine.decode_batch(batch, opts, generator, on_token=emitter.token)
        emitter.flush(outputs)
        found.update(zip(rows, outputs, strict=True))
    return [found[i] for i in range(len(sources))]
