"""BERT (Devlin et al., 2019) and RoBERTa (Liu et al., 2019) encoders: ``model_type`` ``bert``, ``roberta``.

Quirks honoured: post-norm layers, an embedding LayerNorm over word + position + token-type (type 0)
embeddings, exact (erf) GELU, the config's LayerNorm eps (1e-12), and RoBERTa's learned positions that
start after the padding row (``position_offset = pad_id + 1``) and count only non-padding tokens
(``positions_skip_padding``). The result is a sentence encoder (``num_classes=0``): its output is the
mean of the non-padding token states, as sentence-transformers pools. The pooler is not converted;
a checkpoint saved with a task head (``bert.``-prefixed names) is refused by name.
"""

from __future__ import annotations

from typing import Any

from ...config import ModelConfig
from ..rules import Rule
from .common import Architecture, require, unsupported
from .weights import HF_ACTIVATIONS, activation, linear, norm

UNUSED = ("pooler.", "embeddings.position_ids")


def model_config(hf: dict[str, Any]) -> dict[str, Any]:
    """ModelConfig data of a BERT/RoBERTa ``config.json``."""
    roberta = hf.get("model_type") == "roberta"
    bare = ("RobertaModel",) if roberta else ("BertModel",)
    heads = [name for name in hf.get("architectures") or () if name not in bare]
    if heads:
        raise unsupported("architectures", heads, f"only the bare encoder ({bare[0]}, e.g. a sentence-transformers "
                          f"model) converts; save model.{hf.get('model_type')} with save_pretrained first")
    require(hf, "position_embedding_type", ("absolute",), "absolute", "only absolute learned positions")
    require(hf, "is_decoder", (False,), False, "a causal BERT decoder is not converted")
    require(hf, "add_cross_attention", (False,), False, "cross-attention in an encoder is not converted")
    pad = hf.get("pad_token_id", 1 if roberta else 0)
    offset = pad + 1 if roberta else 0
    return {
        "arch": "encoder_classifier", "num_classes": 0, "vocab_size": hf["vocab_size"], "d_model": hf["hidden_size"],
        "heads": hf["num_attention_heads"], "ffn_dim": hf["intermediate_size"],
        "activation": activation(hf, "hidden_act"), "norm": "layernorm", "norm_eps": hf.get("layer_norm_eps", 1e-12),
        "norm_placement": "post", "dropout": hf.get("hidden_dropout_prob", 0.1), "position": "learned",
        "position_offset": offset, "max_positions": hf.get("max_position_embeddings", 512) - offset,
        "positions_skip_padding": roberta, "type_vocab_size": hf.get("type_vocab_size", 2),
        "layernorm_embedding": True, "embed_scale": False, "pad_id": pad, "bos_id": hf.get("bos_token_id"),
        "eos_id": hf.get("eos_token_id"), "encoder": {"layers": hf["num_hidden_layers"]},
    }


def rules(cfg: ModelConfig) -> list[Rule]:
    """Our tensors <- BERT/RoBERTa tensors."""
    d = cfg.d_model
    out = [Rule("embed.weight", ("embeddings.word_embeddings.weight",)),
           Rule("encoder.absolute.table.weight", ("embeddings.position_embeddings.weight",))]
    if cfg.type_vocab_size:
        out.append(Rule("encoder.token_type.weight", ("embeddings.token_type_embeddings.weight",)))
    out += norm("encoder.embed_norm", "embeddings.LayerNorm")
    for i in range(cfg.encoder.layers):
        ours, hf = f"encoder.layers.{i}.sublayers", f"encoder.layer.{i}"
        attn = f"{hf}.attention.self"
        out += linear(f"{ours}.0.body.qkv_proj", (f"{attn}.query", f"{attn}.key", f"{attn}.value"), d)
        out += linear(f"{ours}.0.body.out_proj", f"{hf}.attention.output.dense", d)
        out += norm(f"{ours}.0.norm", f"{hf}.attention.output.LayerNorm")
        out += linear(f"{ours}.1.body.linear1", f"{hf}.intermediate.dense", cfg.ffn_dim)
        out += linear(f"{ours}.1.body.linear2", f"{hf}.output.dense", d)
        out += norm(f"{ours}.1.norm", f"{hf}.output.LayerNorm")
    return out


def hf_config(cfg: ModelConfig, model_type: str = "bert") -> dict[str, Any]:
    """config.json of ``cfg`` as a bare BERT/RoBERTa encoder."""
    return {
        "model_type": model_type, "vocab_size": cfg.vocab_size, "hidden_size": cfg.d_model,
        "num_hidden_layers": cfg.encoder.layers, "num_attention_heads": cfg.heads, "intermediate_size": cfg.ffn_dim,
        "hidden_act": HF_ACTIVATIONS[cfg.activation],
        "max_position_embeddings": cfg.max_positions + cfg.position_offset,
        "type_vocab_size": cfg.type_vocab_size, "layer_norm_eps": cfg.norm_eps, "pad_token_id": cfg.pad_id,
        "bos_token_id": cfg.bos_id, "eos_token_id": cfg.eos_id, "hidden_dropout_prob": cfg.dropout,
        "attention_probs_dropout_prob": 0.0, "position_embedding_type": "absolute",
    }


BERT = Architecture("bert", "BertModel", model_config, rules, hf_config, UNUSED, adopts=True)
ROBERTA = Architecture("roberta", "RobertaModel", model_config, rules, lambda cfg: hf_config(cfg, "roberta"), UNUSED,
                       adopts=True)
