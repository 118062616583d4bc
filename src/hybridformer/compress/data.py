"""Held-out batches for head importance, read from plain (or gzipped) text with the checkpoint's tokenizer.

Sequences follow the model's token conventions: a target (or LM text) is ``BOS … EOS``, a source
``… EOS``; batches are right-padded with ``pad_id``. Lines beyond ``max_examples`` are ignored.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import torch
from tokenizers import Tokenizer
from torch import Tensor

from ..config import ModelConfig
from ..errors import ConfigError, DataError


def read_lines(path: str | Path, limit: int | None = None) -> list[str]:
    """The first ``limit`` lines of a UTF-8 text file (``.gz`` decompressed), newlines stripped."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    lines = []
    try:
        with opener(path, "rt", encoding="utf-8") as handle:
            for number, line in enumerate(handle, 1):
                if limit is not None and number > limit:
                    break
                lines.append(line.rstrip("\n"))
    except (OSError, EOFError, zlib.error, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read {path}: {exc}") from None
    return lines


def _encode(tokenizer: Tokenizer, lines: list[str], *, bos: int | None, eos: int) -> list[list[int]]:
    out = []
    for ids in (e.ids for e in tokenizer.encode_batch(lines)):
        if bos is not None and ids[:1] != [bos]:
            ids = [bos, *ids]
        out.append(ids if ids[-1:] == [eos] else [*ids, eos])
    return out


def _pad(rows: list[list[int]], pad_id: int) -> Tensor:
    batch = torch.full((len(rows), max(len(r) for r in rows)), pad_id, dtype=torch.long)
    for i, row in enumerate(rows):
        batch[i, : len(row)] = torch.tensor(row)
    return batch


def check_batching(max_examples: int, batch_size: int) -> None:
    """``--max-examples`` and ``--batch-size`` are counts: refuse 0 or less before a checkpoint is loaded."""
    for flag, value in (("--max-examples", max_examples), ("--batch-size", batch_size)):
        if value < 1:
            raise ConfigError(f"{flag} must be at least 1, got {value}")


def text_batches(tokenizer: Tokenizer, config: ModelConfig, files: list[Path], *, max_examples: int = 512,
                 batch_size: int = 32, max_len: int = 256) -> list:
    """``(src, tgt)`` batches from two parallel files (seq2seq) or token batches from one file (LM)."""
    check_batching(max_examples, batch_size)
    need = 2 if config.is_seq2seq else 1
    if config.arch == "encoder_classifier" or len(files) != need:
        raise DataError(f"a {config.arch} model needs {need} data file(s) for head importance, got {len(files)}"
                        if config.arch != "encoder_classifier" else
                        "head importance from text files supports encoder_decoder and decoder_lm models")
    columns = [read_lines(f, max_examples) for f in files]
    if len({len(c) for c in columns}) != 1:
        raise DataError(f"{files[0]} and {files[1]} have different line counts in their first {max_examples} lines")
    if not columns[0]:
        raise DataError(f"{files[0]} is empty")
    tgt = [ids[:max_len] for ids in _encode(tokenizer, columns[-1], bos=config.bos_id, eos=config.eos_id)]
    src = [ids[:max_len] for ids in _encode(tokenizer, columns[0], bos=None, eos=config.eos_id)] if need == 2 else None
    largest = max(max(ids) for ids in tgt + (src or []))
    if largest >= config.vocab_size:
        raise DataError(f"token id {largest} from {files[-1]} exceeds the model's vocab_size={config.vocab_size}; "
                        "is tokenizer.json the one the model was trained with?")
    batches = []
    for start in range(0, len(tgt), batch_size):
        rows = slice(start, start + batch_size)
        tgt_batch = _pad(tgt[rows], config.pad_id)
        batches.append((_pad(src[rows], config.pad_id), tgt_batch) if src is not None else tgt_batch)
    return batches
