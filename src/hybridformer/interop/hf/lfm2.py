"""LFM2 (Liquid AI): a decoder of double-gated short-convolution layers (``shortconv``) and GQA attention
layers with QK-norm (``transformer``), each followed by a SwiGLU FFN; pre-norm RMSNorm, RoPE, tied head.

``layer_types`` in config.json names each layer ``conv`` or ``full_attention``: the stack's ``layer`` is
``shortconv`` and ``decoder.layer_types`` marks the attention layers. HF's final norm is called
``embedding_norm``; its FFN width is derived from ``intermediate_size`` (``block_auto_adjust_ff_dim``),
and the export writes the derived width with the adjustment off.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import Tensor

from ...config import ModelConfig
from ..rules import Rule
from .common import (
    Architecture,
    GGUFLayout,
    first_id,
    gated_ffn_rules,
    hf_rope_parameters,
    output_rules,
    require,
    rope_settings,
)


def ffn_width(hf: dict[str, Any]) -> int:
    """The SwiGLU width ``Lfm2MLP`` builds from ``intermediate_size`` (its ``block_*`` adjustment)."""
    width = hf["intermediate_size"]
    if not hf.get("block_auto_adjust_ff_dim", True):
        return width
    width = int(2 * width / 3)
    if hf.get("block_ffn_dim_multiplier") is not None:
        multiple = hf.get("block_multiple_of", 256)
        width = multiple * ((int(hf["block_ffn_dim_multiplier"] * width) + multiple - 1) // multiple)
    return width


def attention_layers(hf: dict[str, Any]) -> list[int]:
    layers = hf["num_hidden_layers"]
    types = hf.get("layer_types")
    if types is None:
        full = hf.get("full_attn_idxs")
        return list(range(layers)) if full is None else sorted(full)
    return [i for i, kind in enumerate(types) if kind != "conv"]


def model_config(hf: dict[str, Any]) -> dict[str, Any]:
    require(hf, "conv_bias", (False,), False, "LFM2 checkpoints have bias-free convolutions")
    heads, hidden = hf["num_attention_heads"], hf["hidden_size"]
    attention = attention_layers(hf)
    layers = hf["num_hidden_layers"]
    conv = [i for i in range(layers) if i not in attention]
    stack: dict[str, Any] = {"layers": layers, "layer": "shortconv" if conv else "transformer",
                             "layer_types": {i: "transformer" for i in attention} if conv else {},
                             "conv": {"short_kernel_size": hf.get("conv_L_cache", 3)}}
    return {
        "arch": "decoder_lm", "vocab_size": hf["vocab_size"], "d_model": hidden, "heads": heads,
        "kv_heads": hf.get("num_key_value_heads") or heads, "ffn_dim": ffn_width(hf), "activation": "swiglu",
        "norm": "rmsnorm", "norm_placement": "pre", "norm_eps": hf.get("norm_eps", 1e-5), "qk_norm": True,
        "dropout": 0.0, "position": "rope", "max_positions": hf.get("max_position_embeddings", 128_000),
        **rope_settings({"rope_theta": 1e6, **hf}), "embed_scale": False,
        "tie_embeddings": bool(hf.get("tie_word_embeddings", hf.get("tie_embedding", True))),
        "attention_bias": False, "ffn_bias": False,
        "bos_id": first_id(hf.get("bos_token_id")), "eos_id": first_id(hf.get("eos_token_id")),
        "pad_id": hf.get("pad_token_id"), "decoder": stack,
    }


def rules(cfg: ModelConfig) -> list[Rule]:
    hd = cfg.attention_head_dim
    q, kv = cfg.heads * hd, cfg.num_kv_heads * hd
    out = [Rule("embed.weight", ("model.embed_tokens.weight",))]
    for i in range(cfg.decoder.layers):
        hf, ours = f"model.layers.{i}", f"decoder.layers.{i}.sublayers"
        out += [Rule(f"{ours}.0.norm.weight", (f"{hf}.operator_norm.weight",)),
                Rule(f"{ours}.1.norm.weight", (f"{hf}.ffn_norm.weight",)),
                *gated_ffn_rules(ours, f"{hf}.feed_forward", cfg, ("w1", "w3", "w2"))]
        if cfg.decoder.layer_of(i) == "transformer":
            attn = f"{hf}.self_attn"
            qkv = tuple(f"{attn}.{p}_proj.weight" for p in "qkv")
            out += [Rule(f"{ours}.0.body.qkv_proj.weight", qkv, (q, kv, kv)),
                    Rule(f"{ours}.0.body.out_proj.weight", (f"{attn}.out_proj.weight",)),
                    Rule(f"{ours}.0.body.q_norm.weight", (f"{attn}.q_layernorm.weight",)),
                    Rule(f"{ours}.0.body.k_norm.weight", (f"{attn}.k_layernorm.weight",))]
        else:
            out += [Rule(f"{ours}.0.body.in_proj.weight", (f"{hf}.conv.in_proj.weight",)),
                    Rule(f"{ours}.0.body.conv.weight", (f"{hf}.conv.conv.weight",),
                         convert=lambda w: w.squeeze(1), restore=lambda w: w.unsqueeze(1)),  # nn.Conv1d's (C, 1, k)
                    Rule(f"{ours}.0.body.out_proj.weight", (f"{hf}.conv.out_proj.weight",))]
    return out + output_rules(cfg, "model.embedding_norm")


def hf_config(cfg: ModelConfig) -> dict[str, Any]:
    stack = cfg.decoder
    return {
        "model_type": "lfm2", "vocab_size": cfg.vocab_size, "hidden_size": cfg.d_model,
        "intermediate_size": cfg.ffn_dim, "block_auto_adjust_ff_dim": False,
        "num_hidden_layers": stack.layers, "num_attention_heads": cfg.heads, "num_key_value_heads": cfg.num_kv_heads,
        "max_position_embeddings": cfg.max_positions, "norm_eps": cfg.norm_eps,
        "rope_parameters": hf_rope_parameters(cfg), "conv_bias": False,
        "conv_L_cache": stack.conv.short_kernel_size, "tie_word_embeddings": cfg.tie_embeddings,
        "layer_types": ["conv" if stack.layer_of(i) == "shortconv" else "full_attention" for i in range(stack.layers)],
        "bos_token_id": cfg.bos_id, "eos_token_id": cfg.eos_id, "pad_token_id": cfg.pad_id,
    }


def gguf_config(field: Callable[[str], Any], tensors: set[str]) -> dict[str, Any]:
    """llama.cpp's lfm2 marks the convolution layers by 0 key/value heads; its FFN width is the final one."""
    kv = field("attention.head_count_kv")
    kv = kv if isinstance(kv, list) else [kv] * field("block_count")
    return {"num_key_value_heads": max(kv), "layer_types": ["full_attention" if n else "conv" for n in kv],
            "conv_L_cache": field("shortconv.l_cache"), "norm_eps": field("attention.layer_norm_rms_epsilon"),
            "block_auto_adjust_ff_dim": False}


def gguf_weight(name: str, weight: Tensor) -> Tensor:
    """llama.cpp stores the short convolutions' kernels as (channels, k), nn.Conv1d as (channels, 1, k)."""
    return weight.unsqueeze(1) if name.endswith("conv.conv.weight") and weight.dim() == 2 else weight


def gguf_stored(name: str, weight: Tensor, cfg: ModelConfig) -> Tensor:
    return weight.squeeze(1) if name.endswith("conv.conv.weight") else weight


def gguf_metadata(writer, cfg: ModelConfig) -> None:
    writer.add_shortconv_l_cache(cfg.decoder.conv.short_kernel_size)


GGUF_NAMES = {  # llama.cpp's lfm2 names -> HF's
    "shortconv.conv": "conv.conv", "shortconv.in_proj": "conv.in_proj", "shortconv.out_proj": "conv.out_proj",
    "attn_norm": "operator_norm", "ffn_norm": "ffn_norm", "ffn_gate": "feed_forward.w1", "ffn_down": "feed_forward.w2",
    "ffn_up": "feed_forward.w3", "attn_q_norm": "self_attn.q_layernorm", "attn_k_norm": "self_attn.k_layernorm",
    "attn_output": "self_attn.out_proj", "token_embd_norm.weight": "model.embedding_norm.weight",  # its final norm
}
LFM2 = Architecture("lfm2", "Lfm2ForCausalLM", model_config, rules, hf_config, adopts=True, ct2=False,
                    gguf=GGUFLayout("lfm2", tensors=GGUF_NAMES, config=gguf_config, weight=gguf_weight,
                                    stored=gguf_stored, metadata=gguf_metadata))
