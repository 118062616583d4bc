"""``generate``: checkpoint(s) + lines of text -> one output line per input line, streamed.

Which engine decodes is decided in :func:`hybridformer.engines.load_engine` (``ENGINES`` by name);
the text around it — chat templates, encoding, windows of input, output lines — is the same for all.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import torch

from .data.text import decode_tokens, encode_checked, windows
from .engines import Engine, GenerationOptions, decode_sources, load_engine
from .errors import ConfigError, DataError
from .inference import CheckpointLike

__all__ = ["GenerationOptions", "generate", "stream_outputs"]


def generate(
    checkpoints: CheckpointLike | Sequence[CheckpointLike], inputs: Iterable[str], *,
    device: str | torch.device = "cpu", weights: Sequence[float] | None = None, combine: str = "prob",
    engine: str = "torch", quantization: str | None = None, adapter: str | Path | None = None, compile: bool = False,
    **options,
) -> Iterator[str]:
    """Decode every input line; yields one output line per input line, in input order, as soon as
    its window of ~``4 · batch_tokens`` input tokens is done.

    ``options`` are the fields of :class:`GenerationOptions` (``beam``, ``lenpen``, ``sample``,
    ``temperature``, ``top_k``, ``top_p``, ``max_len_a``, ``max_len_b``, ``no_repeat_ngram``,
    ``early_stopping``, ``at_budget``, ``seed``, ``batch_tokens``). Several checkpoints decode as one ensemble
    (``weights``, ``combine`` as in :func:`~hybridformer.engines.load_engine`). ``engine`` names an entry of
    :data:`~hybridformer.engines.ENGINES` (``ct2``: CTranslate2, with ``quantization``); ``adapter`` folds a
    LoRA adapter in; ``compile`` compiles the torch engine's decoding step. Checkpoints and options are checked
    now; the input is read lazily while iterating (an input without lines is a :class:`DataError`).
    """
    opts = GenerationOptions.parse(options)
    decoder = load_engine(checkpoints, device, weights=weights, combine=combine, engine=engine,
                          quantization=quantization, adapter=adapter, compile=compile)
    return stream_outputs(decoder, inputs, opts)


def stream_outputs(decoder: Engine, inputs: Iterable[str], opts: GenerationOptions) -> Iterator[str]:
    generator = torch.Generator(device=decoder.device)
    if opts.seed is not None:
        generator.manual_seed(opts.seed)
    if opts.chat:
        if decoder.chat_template is None or decoder.config.is_seq2seq:
            raise ConfigError(f"{decoder.name}: no chat template (tokenizer_config.json chat_template); --chat "
                              "needs an instruct model converted with `hybridformer convert`")
        inputs = (decoder.chat_template.prompt(line) for line in inputs)
    encoded = (encode_checked(decoder.tokenizer, line, decoder.config, number)
               for number, line in enumerate(inputs, start=1))
    count = 0
    for window in windows(encoded, 4 * opts.batch_tokens):
        for ids in decode_sources(decoder, window, opts, generator):
            yield decode_tokens(decoder.tokenizer, ids)
        count += len(window)
    if count == 0:
        raise DataError("no input lines to generate from")
