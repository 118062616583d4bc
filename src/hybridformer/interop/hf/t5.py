"""T5 (Raffel et al., 2020) v1.0 and v1.1 / Flan-T5: ``model_type`` ``t5``.

Quirks honoured: RMSNorm without mean subtraction or bias (T5LayerNorm), no linear biases, attention
scores not scaled (``score_scale=1``), one relative-position bucket bias per stack computed once and
shared by all its layers (HF keeps it in layer 0; ours is the stack's ``score_bias``), ReLU (v1.0) or
gated tanh-GELU (v1.1) feed-forwards, ``d_kv`` as the head width, decoder states scaled by
d_model**-0.5 before the projection where transformers does (``output_scale``; v1.0), and the decoder
starting from the pad token.
"""

from __future__ import annotations

from typing import Any

from ...config import ModelConfig
from ..rules import Rule
from .common import Architecture, require, unsupported
from .weights import linear, norm

FEED_FORWARD = {"relu": "relu", "gelu": "gelu", "gated-gelu": "geglu_tanh", "gated-gelu_new": "geglu_tanh",
                "gated-silu": "swiglu"}
HF_FEED_FORWARD = {"relu": "relu", "gelu": "gelu", "geglu_tanh": "gated-gelu", "swiglu": "gated-silu"}
UNUSED = ("encoder.embed_tokens.weight", "decoder.embed_tokens.weight",  # tied copies of ``shared``
          "decoder.block.0.layer.1.EncDecAttention.relative_attention_bias.weight")  # saved, never used by HF


def model_config(hf: dict[str, Any]) -> dict[str, Any]:
    """ModelConfig data of a T5 ``config.json``."""
    proj = hf.get("feed_forward_proj", "relu")
    if proj not in FEED_FORWARD:
        raise unsupported("feed_forward_proj", proj, f"supported: {', '.join(FEED_FORWARD)}")
    require(hf, "is_encoder_decoder", (True,), True, "T5 is converted as an encoder-decoder")
    d_model, heads = hf["d_model"], hf["num_heads"]
    d_kv = hf.get("d_kv") or d_model // heads
    # transformers 5: the original T5 scales decoder outputs, v1.1 (saved with tie_word_embeddings=false)
    # does not. Whether the head is tied is decided by the file (Architecture.head): a saved lm_head is used.
    tie = hf.get("tie_word_embeddings", True) is not False
    scale = hf.get("scale_decoder_outputs", tie)
    pad, start = hf.get("pad_token_id", 0), hf.get("decoder_start_token_id")
    return {
        "arch": "encoder_decoder", "vocab_size": hf["vocab_size"], "d_model": d_model, "heads": heads,
        "head_dim": None if d_kv * heads == d_model else d_kv, "ffn_dim": hf["d_ff"],
        "activation": FEED_FORWARD[proj], "norm": "rmsnorm", "norm_eps": hf.get("layer_norm_epsilon", 1e-6),
        "norm_placement": "pre", "dropout": hf.get("dropout_rate", 0.1), "position": "t5",
        "t5_buckets": hf.get("relative_attention_num_buckets", 32),
        "t5_max_distance": hf.get("relative_attention_max_distance", 128), "embed_scale": False,
        "attention_bias": False, "ffn_bias": False, "score_scale": 1.0, "tie_embeddings": tie,
        "share_embeddings": True, "output_scale": d_model**-0.5 if scale else 1.0, "pad_id": pad,
        "eos_id": hf.get("eos_token_id", 1), "decoder_start_id": pad if start is None else start,
        "encoder": {"layers": hf["num_layers"]},
        "decoder": {"layers": hf.get("num_decoder_layers") or hf["num_layers"]},
    }


def rules(cfg: ModelConfig) -> list[Rule]:
    """Our tensors <- T5 tensors."""
    inner, ffn = cfg.heads * cfg.attention_head_dim, cfg.ffn_dim
    out = [Rule("src_embed.weight", ("shared.weight",))]
    if not cfg.tie_embeddings:
        out.append(Rule("output.weight", ("lm_head.weight",)))
    gated = cfg.activation in ("geglu_tanh", "swiglu", "geglu")
    for role, layers in (("encoder", cfg.encoder.layers), ("decoder", cfg.decoder.layers)):
        out.append(Rule(f"{role}.score_bias.table.weight",
                        (f"{role}.block.0.layer.0.SelfAttention.relative_attention_bias.weight",)))
        out += norm(f"{role}.final_norm", f"{role}.final_layer_norm", bias=False)
        for i in range(layers):
            ours, hf = f"{role}.layers.{i}.sublayers", f"{role}.block.{i}.layer"
            attn = f"{hf}.0.SelfAttention"
            out += linear(f"{ours}.0.body.qkv_proj", (f"{attn}.q", f"{attn}.k", f"{attn}.v"), inner, bias=False)
            out += linear(f"{ours}.0.body.out_proj", f"{attn}.o", cfg.d_model, bias=False)
            out += norm(f"{ours}.0.norm", f"{hf}.0.layer_norm", bias=False)
            n = 1
            if role == "decoder":
                attn = f"{hf}.1.EncDecAttention"
                out += linear(f"{ours}.1.body.q_proj", f"{attn}.q", inner, bias=False)
                out += linear(f"{ours}.1.body.kv_proj", (f"{attn}.k", f"{attn}.v"), inner, bias=False)
                out += linear(f"{ours}.1.body.out_proj", f"{attn}.o", cfg.d_model, bias=False)
                out += norm(f"{ours}.1.norm", f"{hf}.1.layer_norm", bias=False)
                n = 2
            dense = f"{hf}.{n}.DenseReluDense"
            inputs = (f"{dense}.wi_0", f"{dense}.wi_1") if gated else f"{dense}.wi"
            out += linear(f"{ours}.{n}.body.linear1", inputs, ffn, bias=False)
            out += linear(f"{ours}.{n}.body.linear2", f"{dense}.wo", cfg.d_model, bias=False)
            out += norm(f"{ours}.{n}.norm", f"{hf}.{n}.layer_norm", bias=False)
    return out


def hf_config(cfg: ModelConfig) -> dict[str, Any]:
    """config.json of ``cfg`` as a T5 model."""
    return {
        "model_type": "t5", "is_encoder_decoder": True, "vocab_size": cfg.vocab_size, "d_model": cfg.d_model,
        "d_kv": cfg.attention_head_dim, "d_ff": cfg.ffn_dim, "num_layers": cfg.encoder.layers,
        "num_decoder_layers": cfg.decoder.layers, "num_heads": cfg.heads,
        "relative_attention_num_buckets": cfg.t5_buckets, "relative_attention_max_distance": cfg.t5_max_distance,
        "dropout_rate": cfg.dropout, "layer_norm_epsilon": cfg.norm_eps,
        "feed_forward_proj": HF_FEED_FORWARD[cfg.activation], "tie_word_embeddings": cfg.tie_embeddings,
        "scale_decoder_outputs": cfg.output_scale != 1.0, "pad_token_id": cfg.pad_id, "eos_token_id": cfg.eos_id,
        "decoder_start_token_id": cfg.start_id,
    }


T5 = Architecture("t5", "T5ForConditionalGeneration", model_config, rules, hf_config, UNUSED, head="lm_head.weight",
                  adopts=True)
