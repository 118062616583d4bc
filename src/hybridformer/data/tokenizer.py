"""Tokenizers: subword BPE (Sennrich et al., 2016) with byte fallback, or characters, on HF ``tokenizers``.

Every tokenizer made here has the same fixed layout so that it fits any ModelConfig:
ids 0-3 are ``<pad> <s> </s> <unk>`` (ModelConfig's pad/bos/eos ids), ids 4-259 are the 256
byte tokens ``<0x00>..<0xFF>``, and the learned symbols follow. A character the tokenizer
never saw is spelled as its UTF-8 bytes (byte fallback, as in SentencePiece/Llama), so no
input is ever unknown and decoding gives the input back exactly.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Literal

from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

from ..errors import ConfigError, DataError
from ..filenames import TOKENIZER_CONFIG
from .side_files import tokenizer_config_beside
from .text import read_lines

SPECIALS = ["<pad>", "<s>", "</s>", "<unk>"]
PAD, BOS, EOS, UNK = range(4)
BYTES = [f"<0x{i:02X}>" for i in range(256)]
RESERVED = len(SPECIALS) + len(BYTES)
SPACE = "▁"  # word-boundary marker, SentencePiece style: spaces survive the round trip

TokenizerKind = Literal["bpe", "char", "byte"]


def train_tokenizer(
    texts: Iterable[str], vocab_size: int = 8000, *, kind: TokenizerKind = "bpe", min_frequency: int = 2,
) -> Tokenizer:
    """Learn a tokenizer from an iterable of texts (lines or documents).

    ``kind="bpe"``: up to ``vocab_size`` ids in total (special and byte tokens included).
    ``kind="char"``: one id per character seen (``vocab_size`` is ignored), for character LMs.
    ``kind="byte"``: the 256 UTF-8 bytes and nothing else (nothing is learned), see :func:`byte_tokenizer`.
    """
    if kind == "byte":
        return byte_tokenizer()
    if kind == "char":
        chars = {"\n"} | {ch for text in texts for ch in text}  # line breaks matter to an LM
        return _assemble(sorted(chars), [], kind="char")
    if kind != "bpe":
        raise ConfigError(f"tokenizer kind must be 'bpe', 'char' or 'byte', got {kind!r}")
    if vocab_size <= RESERVED:
        raise ConfigError(f"vocab_size={vocab_size} must exceed the {RESERVED} reserved special and byte tokens")
    learner = Tokenizer(models.BPE(unk_token="<unk>"))
    learner.normalizer, learner.pre_tokenizer = _bpe_normalizer(), _bpe_pre_tokenizer()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size - len(BYTES), special_tokens=SPECIALS, min_frequency=min_frequency,
        show_progress=False,
    )
    learner.train_from_iterator(texts, trainer)
    learned = json.loads(learner.to_str())["model"]
    symbols = [t for t, _ in sorted(learned["vocab"].items(), key=lambda kv: kv[1]) if t not in SPECIALS]
    return _assemble(symbols, [tuple(m) for m in learned["merges"]], kind="bpe")


def char_tokenizer(alphabet: Iterable[str]) -> Tokenizer:
    """A character tokenizer over a known alphabet (generated tasks know theirs in advance)."""
    return _assemble(sorted(set(alphabet)), [], kind="char")


def train_tokenizer_files(
    files: Iterable[str | Path], vocab_size: int = 8000, *, kind: TokenizerKind = "bpe", min_frequency: int = 2,
) -> Tokenizer:
    """``train_tokenizer`` over the lines of plain-text files (``.gz`` allowed); bad UTF-8 is a DataError."""
    def lines() -> Iterator[str]:
        for file in files:
            yield from read_lines(file)

    return train_tokenizer(lines(), vocab_size, kind=kind, min_frequency=min_frequency)


def load_tokenizer_file(path: str | Path) -> Tokenizer:
    """Read a ``tokenizer.json`` and check it has the special-token layout the toolkit's models expect. A
    converted pretrained model's tokenizer (a ``tokenizer_config.json`` beside it names its special tokens,
    even when they are ``<pad> <s> </s>`` at other ids, as BART's) is checked against the model later."""
    path = Path(path)
    try:
        tokenizer = Tokenizer.from_file(str(path))
    except Exception as exc:  # tokenizers raises plain Exception subclasses
        raise DataError(f"{path}: cannot read tokenizer ({exc})") from None
    if not (path.parent / TOKENIZER_CONFIG).is_file():
        check_special_ids(tokenizer, str(path))
    return tokenizer


SPECIAL_NAMES = {"pad": "<pad>", "bos": "<s>", "eos": "</s>"}


def special_token_names(path: str | Path | None) -> dict[str, str]:
    """pad/bos/eos token texts of the tokenizer at ``path``: ours (``<pad> <s> </s>``), or those a converted
    model's ``tokenizer_config.json`` beside it declares (e.g. SmolLM2's ``<|im_start|>``)."""
    names = dict(SPECIAL_NAMES)
    data = tokenizer_config_beside(path, error=DataError)
    for key in names:
        if isinstance(data.get(f"{key}_token"), str):
            names[key] = data[f"{key}_token"]
    return names


def check_special_ids(tokenizer: Tokenizer, where: str, pad_id: int = PAD, bos_id: int = BOS,
                      eos_id: int = EOS, names: dict[str, str] | None = None) -> None:
    """The tokenizer's pad/bos/eos tokens (``<pad> <s> </s>`` unless ``names`` says otherwise) must have
    the model's pad/bos/eos ids. A pad id past the tokenizer's vocabulary (a converted GPT-2's padding
    outside the vocabulary) is no token, so there is nothing to check, as long as no pad token is named."""
    names = names or SPECIAL_NAMES
    for key, want in (("pad", pad_id), ("bos", bos_id), ("eos", eos_id)):
        token = names[key]
        got = tokenizer.token_to_id(token)
        if key == "pad" and got is None and want >= tokenizer.get_vocab_size(with_added_tokens=True):
            continue
        if got != want:
            raise ConfigError(f"{where}: token {token} has id {got}, but the model expects {want}; "
                              "retrain it with `hybridformer tokenizer train` or fix model.pad_id/bos_id/eos_id")


def encode(tokenizer: Tokenizer, texts: list[str], *, add_special_tokens: bool = False) -> list[list[int]]:
    """Token ids of each text; special tokens only from the tokenizer's own post-processor, when asked (a
    converted model's ``<s> … </s>`` framing; the data pipeline adds the model's BOS/EOS itself).

    A :func:`byte_tokenizer` maps text to ``UTF-8 byte + 4`` by construction (and has no post-processor),
    so its ids are computed directly (30x faster than the tokenizers library on one core; tests check both agree).
    """
    if is_byte_tokenizer(tokenizer):
        return [[byte + len(SPECIALS) for byte in text.encode("utf-8")] for text in texts]
    return [enc.ids for enc in tokenizer.encode_batch(texts, add_special_tokens=add_special_tokens)]


def byte_tokenizer() -> Tokenizer:
    """Byte-level tokenizer: ids 0-3 the specials, ids 4-259 the UTF-8 bytes, nothing learned.

    Long Range Arena's text task reads documents byte by byte (Tay et al., 2021). The specials
    are in the vocabulary (so ids match the model's pad/bos/eos) but are not matched inside the
    text: a review that contains the string ``<s>`` is encoded as its bytes, like any other text.
    """
    tokenizer = Tokenizer(models.BPE({token: i for i, token in enumerate(SPECIALS + BYTES)}, [],
                                     unk_token="<unk>", byte_fallback=True))
    tokenizer.decoder = decoders.Sequence([decoders.ByteFallback(), decoders.Fuse()])
    return tokenizer


def is_byte_tokenizer(tokenizer: Tokenizer) -> bool:
    """True for exactly the layout :func:`byte_tokenizer` builds (specials + bytes, no merges, no text rules)."""
    if tokenizer.get_vocab_size() != RESERVED or tokenizer.normalizer is not None or tokenizer.pre_tokenizer:
        return False
    spec = json.loads(tokenizer.to_str())
    model = spec["model"]
    return (model["type"] == "BPE" and model.get("byte_fallback") and not model["merges"]
            and not spec["added_tokens"] and model["vocab"] == {t: i for i, t in enumerate(SPECIALS + BYTES)})


def decode(tokenizer: Tokenizer, ids: list[int]) -> str:
    """Text of ``ids``, skipping <pad>, <s> and </s>."""
    return tokenizer.decode(ids, skip_special_tokens=True)


def _bpe_normalizer() -> normalizers.Normalizer:
    # "a b" -> "▁a▁b": a leading marker on every word, spaces kept exactly (also runs of them).
    return normalizers.Sequence([normalizers.Prepend(SPACE), normalizers.Replace(" ", SPACE)])


def _bpe_pre_tokenizer() -> pre_tokenizers.PreTokenizer:
    return pre_tokenizers.Metaspace(replacement=SPACE, prepend_scheme="never")


def _assemble(symbols: list[str], merges: list[tuple[str, str]], *, kind: TokenizerKind) -> Tokenizer:
    """Lay out specials, bytes, then ``symbols``; the model falls back to bytes for anything else."""
    vocab = {token: i for i, token in enumerate(SPECIALS + BYTES)}
    for symbol in symbols:
        vocab.setdefault(symbol, len(vocab))
    tokenizer = Tokenizer(models.BPE(vocab, merges, unk_token="<unk>", byte_fallback=True))
    if kind == "char":
        tokenizer.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), "isolated")
        tokenizer.decoder = decoders.Sequence([decoders.ByteFallback(), decoders.Fuse()])
    else:
        tokenizer.normalizer, tokenizer.pre_tokenizer = _bpe_normalizer(), _bpe_pre_tokenizer()
        tokenizer.decoder = decoders.Sequence([
            decoders.Replace(SPACE, " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)])
    tokenizer.add_special_tokens(SPECIALS)
    return tokenizer
