"""Held-out batches for head importance and quantization calibration, read from plain (or gzipped) text
with the checkpoint's tokenizer.

Sequences follow the model's token conventions: a target (or LM text) is ``BOS … EOS``, a source
``… EOS``; batches are right-padded with ``pad_id``. Lines beyond ``max_examples`` are ignored.
"""

from __future__ import annotations

from pathlib import Path

from tokenizers import Tokenizer

from ..config import ModelConfig
from ..data.text import encode_source, encode_target, pad, read_lines
from ..errors import ConfigError, DataError


def check_batching(max_examples: int, batch_size: int) -> None:
    """``--max-examples`` and ``--batch-size`` are counts: refuse 0 or less before a checkpoint is loaded."""
    for flag, value in (("--max-examples", max_examples), ("--batch-size", batch_size)):
        if value < 1:
            raise ConfigError(f"{flag} must be at least 1, got {value}")


def text_batches(tokenizer: Tokenizer, config: ModelConfig, files: list[Path], *, max_examples: int = 512,
                 batch_size: int = 32, max_len: int = 256, purpose: str = "head importance") -> list:
    """``(src, tgt)`` batches from two parallel files (seq2seq) or token batches from one file (LM)."""
    check_batching(max_examples, batch_size)
    need = 2 if config.is_seq2seq else 1
    if config.arch == "encoder_classifier" or len(files) != need:
        raise DataError(f"a {config.arch} model needs {need} data file(s) for {purpose}, got {len(files)}"
                        if config.arch != "encoder_classifier" else
                        f"{purpose} from text files supports encoder_decoder and decoder_lm models")
    columns = [read_lines(f, max_examples) for f in files]
    if len({len(c) for c in columns}) != 1:
        raise DataError(f"{files[0]} and {files[1]} have different line counts in their first {max_examples} lines")
    if not columns[0]:
        raise DataError(f"{files[0]} is empty")
    tgt = [(tgt_in + tgt_out[-1:])[:max_len] for tgt_in, tgt_out in (encode_target(tokenizer, line, config)
                                                                      for line in columns[-1])]
    src = [encode_source(tokenizer, line, config)[:max_len] for line in columns[0]] if need == 2 else None
    largest = max(max(ids) for ids in tgt + (src or []))
    if largest >= config.vocab_size:
        raise DataError(f"token id {largest} from {files[-1]} exceeds the model's vocab_size={config.vocab_size}; "
                        "is tokenizer.json the one the model was trained with?")
    batches = []
    for start in range(0, len(tgt), batch_size):
        rows = slice(start, start + batch_size)
        tgt_batch = pad(tgt[rows], config.pad_id)
        batches.append((pad(src[rows], config.pad_id), tgt_batch) if src is not None else tgt_batch)
    return batches
