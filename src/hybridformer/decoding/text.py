"""Text in, token ids out, and back: the conventions generation and evaluation share.

* A seq2seq source is its tokens followed by EOS; the target starts from BOS and ends with EOS
  (``<s>``/``</s>``, ids ``bos_id``/``eos_id`` of the model config; ``pad_id`` pads batches).
* A language model continues each input line as a prompt: the prompt is the line's tokens
  (BOS alone for an empty line), the output is the continuation only.
* Lines are read lazily, so generation streams: nothing waits for the end of the input.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import torch
from tokenizers import Tokenizer
from torch import Tensor

from ..config import ModelConfig
from ..errors import DataError


def read_lines(path: str | Path) -> Iterator[str]:
    """The lines of ``path`` (``-`` = stdin) without their newlines, read lazily.

    A missing file, invalid UTF-8 (named by line number) or an input without a single line is a
    :class:`DataError`.
    """
    name = str(path)
    if name == "-":
        handle, name = sys.stdin.buffer, "<stdin>"
    else:
        file = Path(path)
        if not file.is_file():
            raise DataError(f"{file}: no such input file")
        handle = file.open("rb")
    count = 0
    try:
        for count, raw in enumerate(handle, start=1):
            try:
                yield raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError as exc:
                raise DataError(f"{name}:{count}: invalid UTF-8 ({exc.reason} at byte {exc.start})") from None
    finally:
        if handle is not sys.stdin.buffer:
            handle.close()
    if count == 0:
        raise DataError(f"{name}: empty input (no lines)")


def read_all(source: str | Path | Sequence[str]) -> list[str]:
    """A file's lines (see :func:`read_lines`), or the given list of strings unchanged."""
    return list(read_lines(source)) if isinstance(source, str | Path) else list(source)


def encode_source(tokenizer: Tokenizer, line: str, config: ModelConfig) -> list[int]:
    """Seq2seq source ``tokens + [EOS]``; LM prompt ``tokens`` (``[BOS]`` when the line is empty)."""
    ids = tokenizer.encode(line, add_special_tokens=False).ids
    if config.is_seq2seq:
        return ids + [config.eos_id]
    return ids or [config.bos_id]


def encode_target(tokenizer: Tokenizer, line: str, config: ModelConfig) -> tuple[list[int], list[int]]:
    """Teacher forcing for a seq2seq reference: decoder input ``[start] + tokens`` (start = BOS unless the
    config sets decoder_start_id), labels ``tokens + [EOS]``."""
    ids = tokenizer.encode(line, add_special_tokens=False).ids
    return [config.start_id] + ids, ids + [config.eos_id]


def decode_tokens(tokenizer: Tokenizer, ids: list[int]) -> str:
    """Output text, special tokens dropped; never contains a newline (one output line per input line)."""
    return " ".join(tokenizer.decode(ids, skip_special_tokens=True).splitlines())


def pad(seqs: Sequence[Sequence[int]], pad_id: int, device: str | torch.device = "cpu") -> Tensor:
    """Right-pad token lists into one (batch, longest) tensor."""
    out = torch.full((len(seqs), max(len(s) for s in seqs)), pad_id, dtype=torch.long)
    for row, seq in enumerate(seqs):
        out[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
    return out.to(device)


def token_batches(lengths: Sequence[int], batch_tokens: int, *, rows_per_item: int = 1,
                  same_length: bool = False) -> Iterator[list[int]]:
    """Indices into ``lengths`` grouped into batches of similar length whose padded size
    ``items · rows_per_item · longest`` stays within ``batch_tokens`` (an item longer than the
    budget goes alone). ``same_length`` only groups equal lengths (LM prompts share one offset)."""
    batch: list[int] = []
    longest = 0
    for index in sorted(range(len(lengths)), key=lambda i: lengths[i]):
        size = lengths[index]
        grown = max(longest, size) * (len(batch) + 1) * rows_per_item
        if batch and (grown > batch_tokens or (same_length and size != longest)):
            yield batch
            batch, longest = [], 0
        batch.append(index)
        longest = max(longest, size)
    if batch:
        yield batch


def windows(items: Iterable[list[int]], tokens: int) -> Iterator[list[list[int]]]:
    """Consecutive groups of encoded lines holding about ``tokens`` tokens: sorting within a window
    keeps batches tight while output still streams window by window, in input order."""
    window: list[list[int]] = []
    total = 0
    for item in items:
        window.append(item)
        total += len(item)
        if total >= tokens:
            yield window
            window, total = [], 0
    if window:
        yield window
