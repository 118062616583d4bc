"""What the server decodes with: one loaded model (torch or ct2 engine), token ids in, token ids out."""

from __future__ import annotations

from dataclasses import astuple
from pathlib import Path

import torch

from ..decoding.generate import GenerationOptions, decode_batch, load_decoder
from ..decoding.text import token_batches
from ..errors import ConfigError

ENGINES = ("torch", "ct2")


def load_engine(checkpoint: str | Path, *, engine: str = "torch", quantization: str | None = None,
                device: str = "cpu"):
    """The decoder of one checkpoint (or CTranslate2 export) for ``engine``: ``torch`` or ``ct2``."""
    if engine not in ENGINES:
        raise ConfigError(f"--engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    if engine == "ct2":
        from ..interop.ct2_engine import load_ct2_decoder

        return load_ct2_decoder(checkpoint, quantization=quantization, device=device)
    if quantization is not None:
        raise ConfigError("--quantization applies to --engine ct2; for the torch engine run "
                          "`hybridformer quantize` once and serve its output")
    return load_decoder(checkpoint, device)


def decode_sources(decoder, sources: list[list[int]], opts: GenerationOptions,
                   generator: torch.Generator | None = None) -> list[list[int]]:
    """Output token ids for every source, in order, decoded in length-sorted batches of ``opts.batch_tokens``."""
    outputs: dict[int, list[int]] = {}
    lengths = [len(s) for s in sources]
    for batch in token_batches(lengths, opts.batch_tokens, rows_per_item=opts.beam_size,
                               same_length=not decoder.config.is_seq2seq):
        chunk = [sources[i] for i in batch]
        if hasattr(decoder, "decode_batch"):
            results = decoder.decode_batch(chunk, opts, generator)
        else:
            results = decode_batch(decoder, chunk, opts, generator)
        outputs.update(zip(batch, results, strict=True))
    return [outputs[i] for i in range(len(sources))]


def options_key(opts: GenerationOptions) -> tuple:
    """Requests whose options share this key may be decoded in one batch (batch_tokens aside)."""
    fields = astuple(opts)
    return fields[:-1]  # batch_tokens is the server's, not the request's
