"""What the server decodes with: one loaded model, torch or ct2 engine, token ids in, token ids out."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from ..data.text import token_batches
from ..generation import GenerationOptions, decode_sources
from ..inference import Decoder, load_decoder
from .ragged import Emit, RowEmitter, decode_lm, ragged_ok


def load_engine(checkpoint: str | Path, *, engine: str = "torch", quantization: str | None = None,
                device: str = "cpu", adapter: str | Path | None = None):
    """The decoder of one checkpoint (or CTranslate2 export) for ``engine``: ``torch`` or ``ct2`` (``adapter``:
    a LoRA adapter folded into the checkpoint)."""
    return load_decoder(checkpoint, device, engine=engine, quantization=quantization, adapter=adapter)


def options_key(opts: GenerationOptions) -> tuple:
    """Requests whose options share this key may be decoded in one batch (batch_tokens aside)."""
    return tuple(sorted((k, v) for k, v in asdict(opts).items() if k != "batch_tokens"))  # batch_tokens: the server's


def decode_rows(decoder, sources: list[list[int]], opts: GenerationOptions, generator=None,
                emit: Emit | None = None) -> list[list[int]]:
    """Output token ids per source, as ``generate`` would give them; ``emit(row, token)`` sees each output token
    as soon as the engine has it (LM greedy search and sampling; otherwise when the batch is done).

    Language-model prompts of different lengths decode in one batch under greedy search, on both engines.
    """
    cfg = decoder.config
    if cfg.is_seq2seq or opts.beam_size != 1:
        outputs = decode_sources(decoder, sources, opts, generator)
        RowEmitter(emit, [len(o) for o in outputs], cfg.eos_id).flush(outputs)
        return outputs
    if isinstance(decoder, Decoder):
        return decode_lm(decoder, sources, opts, generator, emit)
    outputs: dict[int, list[int]] = {}  # CTranslate2 forces the longer prompts' tails itself
    for rows in _ct2_groups(sources, opts, cfg.eos_id):
        batch = [sources[r] for r in rows]
        emitter = RowEmitter(emit, decoder.budgets(batch, opts), cfg.eos_id, rows)
        found = decoder.decode_batch(batch, opts, generator, on_token=emitter.token)
        emitter.flush(found)
        outputs.update(zip(rows, found, strict=True))
    return [outputs[i] for i in range(len(sources))]


def _ct2_groups(sources: list[list[int]], opts: GenerationOptions, eos_id: int) -> list[list[int]]:
    """Batches for CTranslate2's Generator: mixed prompt lengths under greedy search, except one-token prompts,
    which batch apart (CTranslate2 4.8 then returns the longer prompts' second token as if generated)."""
    lengths = [len(s) for s in sources]
    if not ragged_ok(opts, sources, eos_id):
        return list(token_batches(lengths, opts.batch_tokens, same_length=True))
    groups = []
    for part in ([i for i, n in enumerate(lengths) if n == 1], [i for i, n in enumerate(lengths) if n > 1]):
        groups += [[part[j] for j in batch] for batch in token_batches([lengths[i] for i in part], opts.batch_tokens)]
    return groups
