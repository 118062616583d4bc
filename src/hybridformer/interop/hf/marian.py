"""Marian / OPUS-MT (Junczys-Dowmunt et al., 2018): ``model_type`` ``marian``.

Quirks honoured: sinusoidal positions laid out as [sin | cos] halves from position 0
(``sinusoid_layout='halves'``), post-norm layers without an embedding norm, a
``final_logits_bias``, the decoder starting from the pad token, and usually SiLU ("swish")
feed-forwards. Separate source and target vocabularies (``share_encoder_decoder_embeddings=false``)
are refused: a checkpoint here holds one tokenizer and one vocabulary.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from typing import Any

from torch import Tensor

from ...config import ModelConfig
from ...errors import ConfigError
from .bart import encdec_fields, weight_plan  # Marian's layers are BART's

MODEL_TYPES = ("marian",)
__all__ = ["MODEL_TYPES", "model_config", "weight_plan"]


def model_config(hf: Mapping[str, Any], names: Collection[str], read: Callable[[str], Tensor]) -> ModelConfig:
    """Our ModelConfig of a Marian ``config.json``."""
    if hf.get("share_encoder_decoder_embeddings", True) is not True:
        raise ConfigError("config.json: share_encoder_decoder_embeddings=false (separate source and target "
                          "vocabularies) is not supported; convert a Marian model with one shared vocabulary")
    if hf.get("decoder_vocab_size", hf["vocab_size"]) not in (None, hf["vocab_size"]):
        raise ConfigError(f"config.json: decoder_vocab_size={hf['decoder_vocab_size']} differs from "
                          f"vocab_size={hf['vocab_size']} (separate target vocabulary); not supported")
    fields = encdec_fields(hf, names, read)
    start = hf.get("decoder_start_token_id")
    start = fields["pad_id"] if start is None else start
    fields.update(norm_placement="post", position="sinusoidal", sinusoid_layout="halves", final_logits_bias=True,
                  decoder_start_id=start, bos_id=start if hf.get("bos_token_id") is None else hf["bos_token_id"],
                  eos_id=hf.get("eos_token_id", 0), max_positions=hf.get("max_position_embeddings", 1024))
    return ModelConfig(**fields)
