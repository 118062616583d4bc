"""BART (Lewis et al., 2020) and mBART (Liu et al., 2020): ``model_type`` ``bart`` and ``mbart``.

Quirks honoured: learned positions with 2 leading rows (``position_offset=2``), a LayerNorm over the
summed embeddings (``layernorm_embedding``), optional √d_model embedding scale, a
``final_logits_bias`` on the vocabulary projection, the decoder starting from ``decoder_start_token_id``
(BART: eos). BART is post-norm; mBART is pre-norm with a final LayerNorm on each stack.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from typing import Any

from torch import Tensor

from ...config import ModelConfig
from .weights import Entry, activation, linear, norm, refuse, same, tied

MODEL_TYPES = ("bart", "mbart")


def model_config(hf: Mapping[str, Any], names: Collection[str], read: Callable[[str], Tensor]) -> ModelConfig:
    """Our ModelConfig of a BART/mBART ``config.json`` (unsupported computation-changing fields refused)."""
    mbart = hf.get("model_type") == "mbart"
    refuse(hf, "is_encoder_decoder", (True,), "BART is an encoder-decoder")
    return ModelConfig(**encdec_fields(hf, names, read), **{
        "norm_placement": "pre" if mbart else "post", "position": "learned", "position_offset": 2,
        "max_positions": hf.get("max_position_embeddings", 1024), "layernorm_embedding": True,
        "final_logits_bias": True,
        "decoder_start_id": hf.get("decoder_start_token_id") if hf.get("decoder_start_token_id") is not None
        else hf.get("eos_token_id", 2),
    })


def encdec_fields(hf: Mapping[str, Any], names: Collection[str], read: Callable[[str], Tensor]) -> dict[str, Any]:
    """The fields BART, mBART and Marian read the same way (Marian's code is BART's)."""
    return {
        "arch": "encoder_decoder", "vocab_size": hf["vocab_size"], "d_model": hf["d_model"],
        "heads": same(hf, "encoder_attention_heads", "decoder_attention_heads"),
        "ffn_dim": same(hf, "encoder_ffn_dim", "decoder_ffn_dim"),
        "activation": activation(hf, "activation_function"), "norm": "layernorm", "dropout": hf.get("dropout", 0.1),
        "embed_scale": bool(hf.get("scale_embedding", False)),
        "tie_embeddings": tied(names, read, "lm_head.weight", "model.shared.weight"), "share_embeddings": True,
        "pad_id": hf.get("pad_token_id", 1), "bos_id": hf.get("bos_token_id", 0), "eos_id": hf.get("eos_token_id", 2),
        "encoder": {"layers": hf["encoder_layers"]}, "decoder": {"layers": hf["decoder_layers"]},
    }


def weight_plan(cfg: ModelConfig, names: Collection[str] = ()) -> list[Entry]:
    """Our parameter names <- HF tensor names, for BART, mBART and Marian."""
    shared = Entry("src_embed.weight", ("model.shared.weight",),
                   alternatives=("model.encoder.embed_tokens.weight", "model.decoder.embed_tokens.weight"))
    plan = [shared, Entry("tgt_embed.weight", shared.hf, alternatives=shared.alternatives)]
    plan.append(Entry("output.weight", shared.hf, alternatives=shared.alternatives) if cfg.tie_embeddings
                else Entry("output.weight", ("lm_head.weight",)))
    if cfg.final_logits_bias:
        plan.append(Entry("output.bias", ("final_logits_bias",), squeeze=True))
    for role, layers in (("encoder", cfg.encoder.layers), ("decoder", cfg.decoder.layers)):
        if cfg.position == "learned":
            plan.append(Entry(f"{role}.absolute.table.weight", (f"model.{role}.embed_positions.weight",)))
        if cfg.layernorm_embedding:
            plan += norm(f"{role}.embed_norm", f"model.{role}.layernorm_embedding")
        if cfg.norm_placement == "pre":
            plan += norm(f"{role}.final_norm", f"model.{role}.layer_norm")
        for i in range(layers):
            plan += layer_plan(f"{role}.layers.{i}.sublayers", f"model.{role}.layers.{i}", cross=role == "decoder")
    return plan


def layer_plan(ours: str, hf: str, *, cross: bool) -> list[Entry]:
    """One BART-style layer: self-attention, [cross-attention], fc1/fc2, each with its LayerNorm."""
    attn = f"{hf}.self_attn"
    plan = linear(f"{ours}.0.body.qkv_proj", (f"{attn}.q_proj", f"{attn}.k_proj", f"{attn}.v_proj"))
    plan += linear(f"{ours}.0.body.out_proj", f"{attn}.out_proj") + norm(f"{ours}.0.norm", f"{hf}.self_attn_layer_norm")
    if cross:
        attn = f"{hf}.encoder_attn"
        plan += linear(f"{ours}.1.body.q_proj", f"{attn}.q_proj")
        plan += linear(f"{ours}.1.body.kv_proj", (f"{attn}.k_proj", f"{attn}.v_proj"))
        plan += linear(f"{ours}.1.body.out_proj", f"{attn}.out_proj") + norm(f"{ours}.1.norm",
                                                                            f"{hf}.encoder_attn_layer_norm")
    ffn = f"{ours}.{2 if cross else 1}"
    return plan + linear(f"{ffn}.body.linear1", f"{hf}.fc1") + linear(f"{ffn}.body.linear2", f"{hf}.fc2") + norm(
        f"{ffn}.norm", f"{hf}.final_layer_norm")
