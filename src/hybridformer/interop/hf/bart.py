"""BART (Lewis et al., 2020) and mBART (Liu et al., 2020): ``model_type`` ``bart`` and ``mbart``.

Quirks honoured: learned positions with 2 leading rows (``position_offset=2``), a LayerNorm over the
summed embeddings (``layernorm_embedding``), the optional √d_model embedding scale, a
``final_logits_bias`` on the vocabulary projection, and the decoder starting from
``decoder_start_token_id`` (BART: eos; mBART without one: eos too). BART is post-norm; mBART is
pre-norm with a final LayerNorm on each stack.
"""

from __future__ import annotations

from typing import Any

from ...config import ModelConfig
from ..rules import Rule
from .common import Architecture, require
from .weights import HF_ACTIVATIONS, activation, linear, norm, same

# saved by some checkpoints as copies of model.shared (tied), or not at all
TIED_COPIES = ("model.encoder.embed_tokens.weight", "model.decoder.embed_tokens.weight")


def model_config(hf: dict[str, Any]) -> dict[str, Any]:
    """ModelConfig data of a BART/mBART ``config.json``."""
    mbart = hf.get("model_type") == "mbart"
    start = hf.get("decoder_start_token_id")
    return {**encdec_fields(hf), "norm_placement": "pre" if mbart else "post", "position": "learned",
            "position_offset": 2, "max_positions": hf.get("max_position_embeddings", 1024),
            "layernorm_embedding": True, "final_logits_bias": True,
            "decoder_start_id": hf.get("eos_token_id", 2) if start is None else start}


def encdec_fields(hf: dict[str, Any]) -> dict[str, Any]:
    """The fields BART, mBART and Marian read the same way (Marian's code is BART's)."""
    require(hf, "is_encoder_decoder", (True,), True, "an encoder-decoder is expected")
    return {
        "arch": "encoder_decoder", "vocab_size": hf["vocab_size"], "d_model": hf["d_model"],
        "heads": same(hf, "encoder_attention_heads", "decoder_attention_heads"),
        "ffn_dim": same(hf, "encoder_ffn_dim", "decoder_ffn_dim"),
        "activation": activation(hf, "activation_function"), "norm": "layernorm", "dropout": hf.get("dropout", 0.1),
        "embed_scale": bool(hf.get("scale_embedding", False)),
        "tie_embeddings": bool(hf.get("tie_word_embeddings", True)), "share_embeddings": True,
        "pad_id": hf.get("pad_token_id", 1), "bos_id": hf.get("bos_token_id"), "eos_id": hf.get("eos_token_id", 2),
        "encoder": {"layers": hf["encoder_layers"]}, "decoder": {"layers": hf["decoder_layers"]},
    }


def rules(cfg: ModelConfig) -> list[Rule]:
    """Our tensors <- BART/mBART/Marian tensors."""
    out = [Rule("src_embed.weight", ("model.shared.weight",))]
    if not cfg.tie_embeddings:
        out.append(Rule("output.weight", ("lm_head.weight",)))
    if cfg.final_logits_bias:
        out.append(Rule("output.bias", ("final_logits_bias",), convert=lambda t: t.reshape(-1),
                        restore=lambda t: t.reshape(1, -1)))
    for role, layers in (("encoder", cfg.encoder.layers), ("decoder", cfg.decoder.layers)):
        if cfg.position == "learned":
            out.append(Rule(f"{role}.absolute.table.weight", (f"model.{role}.embed_positions.weight",)))
        if cfg.layernorm_embedding:
            out += norm(f"{role}.embed_norm", f"model.{role}.layernorm_embedding")
        if cfg.norm_placement == "pre":
            out += norm(f"{role}.final_norm", f"model.{role}.layer_norm")
        for i in range(layers):
            out += layer_rules(f"{role}.layers.{i}.sublayers", f"model.{role}.layers.{i}", cfg.d_model,
                               cross=role == "decoder")
    return out


def layer_rules(ours: str, hf: str, d_model: int, *, cross: bool) -> list[Rule]:
    """One BART-style layer: self-attention, [cross-attention], fc1/fc2, each with its LayerNorm."""
    attn = f"{hf}.self_attn"
    out = linear(f"{ours}.0.body.qkv_proj", (f"{attn}.q_proj", f"{attn}.k_proj", f"{attn}.v_proj"), d_model)
    out += linear(f"{ours}.0.body.out_proj", f"{attn}.out_proj", d_model)
    out += norm(f"{ours}.0.norm", f"{hf}.self_attn_layer_norm")
    if cross:
        attn = f"{hf}.encoder_attn"
        out += linear(f"{ours}.1.body.q_proj", f"{attn}.q_proj", d_model)
        out += linear(f"{ours}.1.body.kv_proj", (f"{attn}.k_proj", f"{attn}.v_proj"), d_model)
        out += linear(f"{ours}.1.body.out_proj", f"{attn}.out_proj", d_model)
        out += norm(f"{ours}.1.norm", f"{hf}.encoder_attn_layer_norm")
    ffn = f"{ours}.{2 if cross else 1}"
    out += linear(f"{ffn}.body.linear1", f"{hf}.fc1", d_model) + linear(f"{ffn}.body.linear2", f"{hf}.fc2", d_model)
    return out + norm(f"{ffn}.norm", f"{hf}.final_layer_norm")


def hf_config(cfg: ModelConfig, model_type: str = "bart") -> dict[str, Any]:
    """config.json of ``cfg`` as a BART (post-norm) or mBART (pre-norm) model."""
    return {
        "model_type": model_type, "is_encoder_decoder": True, "vocab_size": cfg.vocab_size, "d_model": cfg.d_model,
        "encoder_layers": cfg.encoder.layers, "decoder_layers": cfg.decoder.layers,
        "encoder_attention_heads": cfg.heads, "decoder_attention_heads": cfg.heads,
        "encoder_ffn_dim": cfg.ffn_dim, "decoder_ffn_dim": cfg.ffn_dim,
        "activation_function": HF_ACTIVATIONS[cfg.activation], "max_position_embeddings": cfg.max_positions,
        "scale_embedding": cfg.embed_scale, "tie_word_embeddings": cfg.tie_embeddings, "dropout": cfg.dropout,
        "attention_dropout": 0.0, "activation_dropout": 0.0, "pad_token_id": cfg.pad_id, "bos_token_id": cfg.bos_id,
        "eos_token_id": cfg.eos_id, "decoder_start_token_id": cfg.start_id, "forced_eos_token_id": cfg.eos_id,
    }


BART = Architecture("bart", "BartForConditionalGeneration", model_config, rules, hf_config, TIED_COPIES, adopts=True)
MBART = Architecture("mbart", "MBartForConditionalGeneration", model_config, rules,
                     lambda cfg: hf_config(cfg, "mbart"), TIED_COPIES, adopts=True)
