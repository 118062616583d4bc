"""Text in, token ids out, and back: reading text files and the token conventions everything shares.

* Text comes from files (``.gz`` decompressed), or stdin (``-``); invalid UTF-8 names the file and line.
* A seq2seq source is its tokens followed by EOS; the target starts from BOS and ends with EOS
  (``<s>``/``</s>``, ids ``bos_id``/``eos_id`` of the model config; ``pad_id`` pads batches).
* A language model continues each input line as a prompt: the prompt is the line's tokens
  (BOS alone for an empty line), the output is the continuation only.
* Lines are read lazily, so generation streams: nothing waits for the end of the input.
"""

from __future__ import annotations

import gzip
import sys
import zlib
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import BinaryIO

import torch
from tokenizers import Tokenizer
from torch import Tensor

from ..config import INPUT_LIMIT, ModelConfig
from ..errors import DataError

READ_ERRORS = (OSError, EOFError, zlib.error)  # zlib.error: a .gz file whose compressed stream is corrupt


def open_binary(path: str | Path) -> BinaryIO:
    """``path`` opened for reading bytes: ``-`` is stdin, ``.gz`` is decompressed on the fly."""
    if str(path) == "-":
        return sys.stdin.buffer
    path = Path(path)
    try:
        return gzip.open(path, "rb") if path.suffix == ".gz" else path.open("rb")
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from None


def read_bytes(path: str | Path) -> bytes:
    """All bytes of ``path`` (``.gz`` decompressed)."""
    with open_binary(path) as handle:
        try:
            return handle.read()
        except READ_ERRORS as exc:
            raise DataError(f"{path}: cannot read ({exc})") from None


def read_text(path: str | Path) -> str:
    """The whole file as text (``.gz`` decompressed); invalid UTF-8 names the file and line."""
    return decode_utf8(read_bytes(path), str(path))


def decode_utf8(raw: bytes, where: str, line: int | None = None) -> str:
    """``raw`` as UTF-8 text; invalid bytes are a DataError naming ``where`` and the line
    (``line``: the line ``raw`` is, when it is one line of a file)."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = line if line is not None else raw.count(b"\n", 0, exc.start) + 1
        raise DataError(f"{where}:{line}: invalid UTF-8 (byte {raw[exc.start]:#04x}); "
                        "convert the file to UTF-8, e.g. with iconv") from None


def iter_lines(path: str | Path, *, limit: int | None = None, require: bool = False) -> Iterator[str]:
    """The lines of ``path`` (``-`` = stdin, ``.gz`` decompressed) without their line endings, read lazily.

    ``limit``: stop after that many lines. ``require``: an input without a single line is a
    :class:`DataError` (what a command that reads its input expects). Invalid UTF-8 names the line.
    """
    name = "<stdin>" if str(path) == "-" else str(path)
    handle = open_binary(path)
    count = 0
    try:
        for count, raw in enumerate(handle, start=1):
            if limit is not None and count > limit:
                count -= 1
                break
            yield decode_utf8(raw, name, count).removesuffix("\n").removesuffix("\r")
    except READ_ERRORS as exc:
        raise DataError(f"{name}: cannot read ({exc})") from None
    finally:
        if handle is not sys.stdin.buffer:
            handle.close()
    if require and count == 0:
        raise DataError(f"{name}: empty input (no lines)")


def read_lines(path: str | Path, limit: int | None = None) -> list[str]:
    """The (first ``limit``) lines of a text file, without their line endings (see :func:`iter_lines`)."""
    return list(iter_lines(path, limit=limit))


def read_all(source: str | Path | Sequence[str]) -> list[str]:
    """A file's lines (at least one; see :func:`iter_lines`), or the given list of strings unchanged."""
    return list(iter_lines(source, require=True)) if isinstance(source, str | Path) else list(source)


# ----------------------------------------------------------------------------- token ids


def source_ids(ids: list[int], eos_id: int) -> list[int]:
    """An encoder input: the tokens, then EOS."""
    return ids + [eos_id]


def frame_source(ids: list[int], eos_id: int) -> list[int]:
    """A seq2seq source as the tokenizer's post-processor framed it (BART ``<s> … </s>``, T5 ``… </s>``),
    EOS appended when the framing does not already end with it (the toolkit's tokenizers add nothing)."""
    return ids if ids and ids[-1] == eos_id else source_ids(ids, eos_id)


def target_ids(ids: list[int], bos_id: int, eos_id: int) -> tuple[list[int], list[int]]:
    """Teacher forcing: decoder input ``[BOS] + tokens``, labels ``tokens + [EOS]``."""
    return [bos_id] + ids, ids + [eos_id]


def encode_source(tokenizer: Tokenizer, line: str, config: ModelConfig) -> list[int]:
    """Seq2seq source ``tokens + [EOS]``; LM prompt ``tokens`` (``[BOS]`` when the line is empty).

    A seq2seq source gets the special tokens of the tokenizer's own post-processor, so a converted
    model sees its inputs framed as in training (BART ``<s> … </s>``, T5 and Marian ``… </s>``); the
    toolkit's tokenizers have none, and EOS is appended when the framing does not already end with it.
    """
    if config.is_seq2seq:
        return frame_source(tokenizer.encode(line).ids, config.eos_id)
    ids = tokenizer.encode(line, add_special_tokens=False).ids
    return ids or [config.bos_id]


def encode_checked(tokenizer: Tokenizer, line: str, config: ModelConfig, number: int) -> list[int]:
    """:func:`encode_source` of input line ``number``; longer than the model's ``position_capacity()`` is a
    DataError.

    A huge line (a 10 MB paragraph) is judged from a prefix, so it fails in milliseconds instead of
    being tokenized for half a minute and then decoded for ever.
    """
    limit = config.position_capacity()
    prefix = 16 * (limit + 2)  # characters: no tokenizer averages 16 characters per token
    if len(line) > prefix and len(tokenizer.encode(line[:prefix], add_special_tokens=False).ids) > limit + 1:
        raise DataError(f"input line {number} ({len(line):,} characters) is longer than the {limit:,} tokens "
                        f"this model takes ({_limit_reason(config)}); shorten or split it")
    ids = encode_source(tokenizer, line, config)
    if len(ids) > limit:
        raise DataError(f"input line {number} has {len(ids):,} tokens, more than the {limit:,} this model takes "
                        f"({_limit_reason(config)}); shorten or split it")
    return ids


def _limit_reason(config: ModelConfig) -> str:
    if config.position == "learned":
        return "model.max_positions of its learned positions"
    return f"max(model.max_positions, {INPUT_LIMIT})"


def encode_target(tokenizer: Tokenizer, line: str, config: ModelConfig) -> tuple[list[int], list[int]]:
    """Teacher forcing for a seq2seq reference: decoder input ``[start] + tokens`` (start = BOS unless
    decoder_start_id is set: T5, Marian, BART), labels ``tokens + [EOS]``."""
    return target_ids(tokenizer.encode(line, add_special_tokens=False).ids, config.start_id, config.eos_id)


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
