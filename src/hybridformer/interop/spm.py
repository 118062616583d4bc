"""A Marian folder's sentencepiece tokenizer (``source.spm`` + ``vocab.json``) as one ``tokenizers`` tokenizer.

Marian (``MarianTokenizer``) segments text with the source sentencepiece model, then looks each piece
up in ``vocab.json``, the vocabulary shared by source and target (a piece it lacks is ``<unk>``),
and appends ``</s>``; a leading language code ``>>xx<<`` is kept as one token. transformers has no
fast converter for it, so the tokenizer is assembled here from transformers' sentencepiece pieces:
a Unigram model whose ids are ``vocab.json``'s, with the source model's scores and its normalizer
(``SpmConverter.build_tokenizer_from_spm_proto``). Pieces only the target side uses keep their ids
but are stored behind a private-use character (U+E000) that the normalizer removes from any input, so
segmentation never picks them (exactly as Marian, whose source model does not know them) while the
decoder drops the marker and outputs decode to the piece's text. A character ``source.spm`` does not
know is emitted by sentencepiece with its own text, which Marian looks up in ``vocab.json``; single
target-only characters therefore stay matchable at sentencepiece's unknown-character score. The one
departure: a run of several such characters is one piece for Marian (``<unk>`` unless the run is in
``vocab.json``), one token per character here. Targets (for fine-tuning) are segmented with
``source.spm`` too: a checkpoint holds one tokenizer.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from tokenizers import AddedToken, Tokenizer, decoders, normalizers, processors

from .. import structured
from ..errors import CheckpointError, ConfigError

HIDDEN = "\ue000"  # marks target-only pieces; removed from every input, so they never match
UNKNOWN_PENALTY = 10.0  # sentencepiece's kUnkPenalty: an unknown character scores the lowest piece minus this
LANGUAGE_CODE = re.compile(r">>.+<<")


def marian_tokenizer(folder: Path) -> Tokenizer:
    """``folder``'s ``source.spm`` + ``vocab.json`` as a tokenizer with Marian's ids and framing (``… </s>``)."""
    try:
        from transformers.convert_slow_tokenizer import SpmConverter, import_protobuf
    except ImportError:
        raise ConfigError("converting a sentencepiece tokenizer needs transformers and protobuf: "
                          "pip install 'hybridformer[interop]'") from None
    source, vocab_file = folder / "source.spm", folder / "vocab.json"
    if not vocab_file.is_file():
        raise CheckpointError(f"{vocab_file}: missing (a Marian folder has source.spm, target.spm and vocab.json)")
    try:
        vocab = structured.read(vocab_file, error=CheckpointError)
        proto = import_protobuf().ModelProto()
        proto.ParseFromString(source.read_bytes())
    except (json.JSONDecodeError, UnicodeDecodeError, ValueError, OSError) as exc:
        raise CheckpointError(f"{folder}: corrupt source.spm or vocab.json ({exc})") from None
    if not isinstance(vocab, dict) or sorted(vocab.values()) != list(range(len(vocab))):
        raise CheckpointError(f"{vocab_file}: expected a JSON object mapping pieces to the ids 0..n-1")
    spec = proto.trainer_spec
    if spec.model_type != 1 or spec.byte_fallback or any(piece.type == 4 for piece in proto.pieces):
        raise ConfigError(f"{source}: only unigram sentencepiece models without byte fallback or user-defined "
                          "pieces convert (Marian's own); add a tokenizer.json to the folder instead")
    for name in ("<unk>", "</s>"):
        if name not in vocab:
            raise CheckpointError(f"{vocab_file}: no {name} entry")
    scores = {piece.piece: piece.score for piece in proto.pieces if piece.type == 1}  # normal pieces
    lowest = min(scores.values(), default=0.0)  # kept as the minimum: the unknown-piece score derives from it
    by_id = sorted(vocab, key=vocab.__getitem__)
    specials = [t for t in ("</s>", "<unk>", "<pad>") if t in vocab]
    codes = [t for t in by_id if LANGUAGE_CODE.fullmatch(t)]  # >>fra<<: one token at the start, as Marian keeps it
    kept = set(specials) | set(codes)  # matched as added tokens before the model sees the text
    table = [(piece, scores[piece]) if piece in scores else _target_only(piece, kept, lowest) for piece in by_id]
    proto.trainer_spec.unk_id = vocab["<unk>"]
    tokenizer = SpmConverter.build_tokenizer_from_spm_proto(proto, table, legacy=True)
    tokenizer.normalizer = normalizers.Sequence([normalizers.Replace(HIDDEN, ""), tokenizer.normalizer])
    tokenizer.decoder = decoders.Sequence([decoders.Replace(HIDDEN, ""), tokenizer.decoder])
    tokenizer.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in specials])
    tokenizer.add_tokens([AddedToken(t, special=False, normalized=False) for t in codes])
    tokenizer.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", vocab["</s>"])])
    return tokenizer


def _target_only(piece: str, kept: set[str], lowest: float) -> tuple[str, float]:
    """A piece ``source.spm`` lacks. Sentencepiece emits a character it does not know as an unknown piece
    (score: the lowest minus 10) with its surface text, which Marian then finds in ``vocab.json``: so a
    single character stays matchable at exactly that score; longer pieces are hidden."""
    if piece in kept:
        return piece, lowest
    return (piece, lowest - UNKNOWN_PENALTY) if len(piece) == 1 else (HIDDEN + piece, lowest)
