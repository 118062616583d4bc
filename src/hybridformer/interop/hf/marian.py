"""Marian / OPUS-MT (Junczys-Dowmunt et al., 2018): ``model_type`` ``marian``.

Quirks honoured: sinusoidal positions laid out as [sin | cos] halves from position 0
(``sinusoid_layout='halves'``, not stored in the checkpoint), post-norm layers without an embedding
norm, a ``final_logits_bias``, the decoder starting from the pad token, and usually SiLU ("swish")
feed-forwards. Separate source and target vocabularies (``share_encoder_decoder_embeddings=false``)
are refused: a checkpoint here holds one tokenizer and one vocabulary.
"""

from __future__ import annotations

from typing import Any

from ...config import ModelConfig
from .bart import TIED_COPIES, encdec_fields, rules
from .bart import hf_config as bart_config
from .common import Architecture, require, unsupported

# sinusoids some exports store although they are computed
POSITIONS = ("model.encoder.embed_positions.weight", "model.decoder.embed_positions.weight")


def model_config(hf: dict[str, Any]) -> dict[str, Any]:
    """ModelConfig data of a Marian ``config.json``."""
    require(hf, "share_encoder_decoder_embeddings", (True,), True,
            "separate source and target vocabularies; convert a Marian model with one shared vocabulary")
    if hf.get("decoder_vocab_size") not in (None, hf["vocab_size"]):
        raise unsupported("decoder_vocab_size", hf["decoder_vocab_size"],
                          f"a target vocabulary apart from vocab_size={hf['vocab_size']}")
    fields = encdec_fields(hf)
    start = hf.get("decoder_start_token_id")
    fields.update(norm_placement="post", position="sinusoidal", sinusoid_layout="halves", final_logits_bias=True,
                  decoder_start_id=fields["pad_id"] if start is None else start, eos_id=hf.get("eos_token_id", 0),
                  max_positions=hf.get("max_position_embeddings", 1024))
    return fields


def hf_config(cfg: ModelConfig) -> dict[str, Any]:
    config = bart_config(cfg, "marian")
    config.update(decoder_vocab_size=cfg.vocab_size, share_encoder_decoder_embeddings=True)
    return config


MARIAN = Architecture("marian", "MarianMTModel", model_config, rules, hf_config, TIED_COPIES + POSITIONS, adopts=True)
