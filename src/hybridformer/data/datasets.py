"""Reading training text: parallel files, JSONL with named fields, monolingual text in fixed blocks.

Nothing is silent: invalid UTF-8 names the file and line, mismatched parallel files name both
files and both counts, and dropped (empty or over-long) pairs are counted in a ``DataReport``.
Examples are token-id lists ready for batching: ``src`` (encoder input, ends with EOS),
``tgt_in`` (decoder input, starts with the decoder start token) and ``tgt_out`` (what the decoder must
predict). The special ids are the model's (``ModelConfig`` pad/bos/eos/decoder_start_id), so a converted
BART (``<s>``=0, EOS 2, start = EOS), T5 (start = pad = 0, EOS 1) or GPT-2 (BOS = EOS) trains on exactly
the framing it decodes with (:func:`~hybridformer.data.text.encode_source`).
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer

from .. import structured
from ..config import ModelConfig
from ..errors import DataError
from .text import frame_source, read_lines, target_ids
from .tokenizer import encode


@dataclass
class Example:
    src: list[int]  # empty for language modelling
    tgt_in: list[int]
    tgt_out: list[int]
    label: int | None = None  # class id (classification: src holds the document, tgt_in/tgt_out are empty)

    @property
    def size(self) -> int:
        """Padded-batch cost of this example: the longer of its encoder and decoder sequences."""
        return max(len(self.src), len(self.tgt_in))


@dataclass
class DataReport:
    """What was read and what was dropped, to print rather than hide."""

    source: str
    read: int = 0
    kept: int = 0
    dropped_empty: int = 0
    dropped_long: int = 0
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        text = f"{self.source}: {self.kept} examples from {self.read} read"
        if self.dropped_empty or self.dropped_long:
            text += f" (dropped {self.dropped_empty} empty, {self.dropped_long} longer than the limit)"
        return text


# ----------------------------------------------------------------------------- raw text


def read_parallel(src_path: str | Path, tgt_path: str | Path) -> list[tuple[str, str]]:
    """Aligned line pairs of two files; different line counts are an error naming both."""
    src, tgt = read_lines(src_path), read_lines(tgt_path)
    if len(src) != len(tgt):
        raise DataError(f"parallel files differ in length: {src_path} has {len(src)} lines, "
                        f"{tgt_path} has {len(tgt)}")
    return list(zip(src, tgt, strict=True))


def read_jsonl(path: str | Path, fields: Sequence[str]) -> list[tuple[str, ...]]:
    """One tuple of ``fields`` per JSON line. A field may be dotted (``target.0``); lists of strings are joined."""
    return [tuple(_field(record, name, where) for name in fields) for where, record in json_records(path)]


def json_records(path: str | Path) -> Iterator[tuple[str, Any]]:
    """``(\"file:line\", record)`` for every non-blank line of a JSONL file; bad JSON names the line."""
    path = Path(path)
    for number, line in enumerate(read_lines(path), 1):
        if not line.strip():
            continue
        yield f"{path}:{number}", structured.parse(line, where=f"{path}:{number}", lines=False, error=DataError)


def _field(record: Any, name: str, where: str) -> str:
    value = record
    for part in name.split("."):
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            keys = ", ".join(sorted(value)) if isinstance(value, dict) else type(value).__name__
            raise DataError(f"{where}: no field {name!r} (available: {keys})")
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return " ".join(value)
    if not isinstance(value, str):
        raise DataError(f"{where}: field {name!r} is {type(value).__name__}, expected text")
    return value


# ----------------------------------------------------------------------------- examples


def seq2seq_examples(
    pairs: Sequence[tuple[str, str]], tokenizer: Tokenizer, *, max_src_len: int, max_tgt_len: int, source: str,
    config: ModelConfig,
) -> tuple[list[Example], DataReport]:
    """Tokenize pairs with ``config``'s special ids (sources framed as at inference, targets from
    ``config.start_id``); drop empty pairs and pairs over the length limits (counted in the report)."""
    report = DataReport(source, read=len(pairs))
    src_ids = [frame_source(ids, config.eos_id)
               for ids in encode(tokenizer, [s for s, _ in pairs], add_special_tokens=True)]
    tgt_ids = encode(tokenizer, [t for _, t in pairs])
    examples = []
    for (src_text, tgt_text), src, tgt in zip(pairs, src_ids, tgt_ids, strict=True):
        if not src_text.strip() or not tgt_text.strip():
            report.dropped_empty += 1
        elif len(src) > max_src_len or len(tgt) + 1 > max_tgt_len:
            report.dropped_long += 1
        else:
            examples.append(Example(src, *target_ids(tgt, config.start_id, config.eos_id)))
    report.kept = len(examples)
    return examples, report


def lm_examples(text: str, tokenizer: Tokenizer, *, block_size: int, source: str, config: ModelConfig,
                ) -> tuple[list[Example], DataReport]:
    """Split one long token stream (``config.bos_id`` first) into non-overlapping blocks of ``block_size``
    next-token predictions."""
    lines = text.splitlines(keepends=True)
    stream = [config.bos_id] + [i for ids in encode(tokenizer, lines) for i in ids]
    count = (len(stream) - 1) // block_size
    examples = [Example([], stream[i * block_size: (i + 1) * block_size],
                        stream[i * block_size + 1: (i + 1) * block_size + 1]) for i in range(count)]
    report = DataReport(source, read=count, kept=count)
    if count == 0:
        raise DataError(f"{source}: {len(stream) - 1} tokens is less than one block of {block_size}; "
                        "lower data.block_size or add text")
    dropped = len(stream) - 1 - count * block_size
    if dropped:
        report.notes.append(f"last {dropped} tokens do not fill a block and are unused")
    return examples, report


Segments = list[tuple[str, bool]]  # one example's text in pieces; True = an answer (trained on)


def answer_examples(texts: Sequence[Segments], tokenizer: Tokenizer, *, block_size: int, source: str,
                    config: ModelConfig, answer_only: bool, end: Sequence[int] = (),
                    ) -> tuple[list[Example], DataReport]:
    """One next-token example per conversation or prompt/completion record (batched padded, one per row, so
    attention never crosses examples). With ``answer_only`` the targets inside context pieces are ignored
    (``config.pad_id``, the loss's ignore index): the loss falls on the answers alone. ``end`` ids follow the
    text, trained (EOS after a completion). Examples over ``block_size`` tokens are dropped and counted."""
    report = DataReport(source, read=len(texts))
    encodings = tokenizer.encode_batch(["".join(text for text, _ in pieces) for pieces in texts],
                                       add_special_tokens=False)
    examples = []
    for pieces, encoding in zip(texts, encodings, strict=True):
        ends = list(itertools.accumulate(len(text) for text, _ in pieces))
        trained = [pieces[min(bisect.bisect_right(ends, start), len(pieces) - 1)][1]
                   for start, _ in encoding.offsets] + [True] * len(end)
        ids = encoding.ids + list(end)
        targets = [t if keep or not answer_only else config.pad_id for t, keep in zip(ids[1:], trained[1:],
                                                                                      strict=True)]
        if len(ids) - 1 > block_size:
            report.dropped_long += 1
        elif all(t == config.pad_id for t in targets):
            report.dropped_empty += 1
        else:
            examples.append(Example([], ids[:-1], targets))
    report.kept = len(examples)
    if answer_only:
        report.notes.append("loss on the answers only (data.answer_only)")
    return examples, report


def split_text(text: str, valid_fraction: float) -> tuple[str, str]:
    """First ``1 - valid_fraction`` of the text for training, the rest for validation (at a line break)."""
    cut = int(len(text) * (1.0 - valid_fraction))
    newline = text.rfind("\n", 0, cut)
    cut = newline + 1 if newline > 0 else cut
    return text[:cut], text[cut:]
