"""Gemma 3 (``Gemma3ForCausalLM``, model_type ``gemma3_text``: the 270M and 1B models and the text stack of
the larger ones). The Llama layout plus: embeddings scaled by √d_model, RMSNorm scaling by ``1 + w``,
sandwich norms (a second norm on each branch's output), QK-norm, a GELU-tanh gated FFN, a query scale
of ``query_pre_attn_scalar``^-½, and local sliding-window layers (their own, unscaled RoPE base)
between global ones. Our stack's ``attention`` is the local kind; the global layers are per-layer
overrides. Soft-capping (Gemma 2's) is refused when set: Gemma 3 sets neither cap.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import Tensor

from ...config import ModelConfig
from ...errors import ConfigError
from . import llama
from .common import Architecture, GGUFLayout, hf_rope_parameters, rope_settings, unsupported

NORMS = {"0.norm": "input_layernorm", "0.post_norm": "post_attention_layernorm",
         "1.norm": "pre_feedforward_layernorm", "1.post_norm": "post_feedforward_layernorm"}
GLOBAL_BASE, LOCAL_BASE = 1_000_000.0, 10_000.0  # transformers' defaults when config.json omits them
KINDS = ("sliding_attention", "full_attention")


def rope_kinds(hf: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(global, local) RoPE parameters: transformers 5 keys ``rope_parameters`` by layer kind; older
    config.json files have ``rope_theta``, ``rope_scaling`` (global) and ``rope_local_base_freq``."""
    params = hf.get("rope_parameters") or {}
    if "full_attention" in params or "sliding_attention" in params:
        full = {"rope_theta": GLOBAL_BASE} | (params.get("full_attention") or {})
        return full, {"rope_theta": LOCAL_BASE} | (params.get("sliding_attention") or {})
    full = {"rope_theta": hf.get("rope_theta", GLOBAL_BASE)} | (params or hf.get("rope_scaling") or {})
    return full, {"rope_type": "default", "rope_theta": hf.get("rope_local_base_freq", LOCAL_BASE)}


def model_config(hf: dict[str, Any]) -> dict[str, Any]:
    for field in ("attn_logit_softcapping", "final_logit_softcapping"):
        if hf.get(field) is not None:
            raise unsupported(field, hf[field], "soft-capping of logits is not implemented")
    if hf.get("use_bidirectional_attention"):
        raise unsupported("use_bidirectional_attention", True, "EmbeddingGemma's bidirectional attention")
    act = hf.get("hidden_activation", "gelu_pytorch_tanh")
    if act not in ("gelu_pytorch_tanh", "gelu_new"):
        raise unsupported("hidden_activation", act, "Gemma 3 uses gelu_pytorch_tanh")
    full, local = rope_kinds(hf)
    if local.get("rope_type", "default") != "default":
        raise unsupported("rope_parameters.sliding_attention.rope_type", local["rope_type"],
                          "the local layers' RoPE is unscaled here")
    heads, layers = hf["num_attention_heads"], hf["num_hidden_layers"]
    pattern = hf.get("layer_types") or ["full_attention" if (i + 1) % hf.get("sliding_window_pattern", 6) == 0
                                        else "sliding_attention" for i in range(layers)]
    if any(kind not in KINDS for kind in pattern):
        raise unsupported("layer_types", pattern, f"supported kinds: {', '.join(KINDS)}")
    head_dim = hf.get("head_dim") or hf["hidden_size"] // heads
    scalar = hf.get("query_pre_attn_scalar", 256)
    data = llama.model_config({**hf, "model_type": "gemma3_text", "hidden_act": "silu", "mlp_bias": False,
                               "rope_parameters": full})
    local_attention = {"name": "sliding_window", "window": int(hf.get("sliding_window") or 4096) - 1,
                       "rope_base": float(local["rope_theta"])}
    data["decoder"] |= {"attention": local_attention,
                        "layer_attention": {i: {"name": "full"} for i, kind in enumerate(pattern)
                                            if kind == "full_attention"}}
    return data | {
        "activation": "geglu_tanh", "norm": "offset_rmsnorm", "norm_placement": "sandwich", "qk_norm": True,
        "embed_scale": True, "tie_embeddings": bool(hf.get("tie_word_embeddings", True)),
        "score_scale": None if scalar == head_dim else scalar**-0.5, **rope_settings({**hf, "rope_parameters": full}),
    }


def rules(cfg: ModelConfig) -> list:
    return llama.rules(cfg, NORMS)


def hf_config(cfg: ModelConfig) -> dict[str, Any]:
    stack = cfg.decoder
    config = llama.hf_config(cfg, "gemma3_text")
    for key in ("hidden_act", "mlp_bias", "rope_parameters"):
        config.pop(key)
    local = stack.attention
    return config | {
        "hidden_activation": "gelu_pytorch_tanh", "attention_bias": cfg.attention_bias,
        "query_pre_attn_scalar": cfg.attention_head_dim if cfg.score_scale is None else round(cfg.score_scale**-2),
        "sliding_window": local.options.get("window", 0) + 1,
        "layer_types": ["full_attention" if stack.attention_of(i).name == "full" else "sliding_attention"
                        for i in range(stack.layers)],
        "rope_parameters": {"full_attention": hf_rope_parameters(cfg), "sliding_attention": {
            "rope_type": "default", "rope_theta": local.rope_base or cfg.rope_base}},
        "final_logit_softcapping": None, "attn_logit_softcapping": None,
    }


def gguf_config(field: Callable[[str], Any], tensors: set[str]) -> dict[str, Any]:
    """What llama.cpp's gemma3 files leave implicit: its runtime's 1/√head_dim query scale (all but 27B), local
    base 10k and a global layer every sixth (as transformers' GGUF loader assumes too)."""
    head_dim = field("attention.key_length") or field("embedding_length") // field("attention.head_count")
    return {"sliding_window": field("attention.sliding_window"), "query_pre_attn_scalar": head_dim,
            "rope_local_base_freq": LOCAL_BASE, "sliding_window_pattern": 6}


def gguf_weight(name: str, weight: Tensor) -> Tensor:
    """llama.cpp stores Gemma's norm weights as 1 + w (its RMSNorm multiplies by the weight)."""
    return weight - 1 if name.endswith("norm.weight") else weight


def gguf_stored(name: str, weight: Tensor, cfg: ModelConfig) -> Tensor:
    """The inverse of :func:`gguf_weight`."""
    return weight + 1 if name.endswith("norm.weight") else weight


def gguf_metadata(writer, cfg: ModelConfig) -> None:
    """llama.cpp's gemma3 fixes what :func:`gguf_config` reads back: refuse a model that differs."""
    stack, pattern = cfg.decoder, 6
    local = stack.attention
    expected = ["full" if (i + 1) % pattern == 0 else "sliding_window" for i in range(stack.layers)]
    problems = []
    if [stack.attention_of(i).name for i in range(stack.layers)] != expected:
        problems.append(f"a global layer every {pattern}th (llama.cpp's gemma3 pattern)")
    if (local.rope_base or cfg.rope_base) != LOCAL_BASE:
        problems.append(f"a local RoPE base of {LOCAL_BASE:g}")
    if cfg.score_scale is not None:
        problems.append("queries scaled by 1/sqrt(head_dim) (query_pre_attn_scalar = head_dim)")
    if problems:
        raise ConfigError(f"llama.cpp's gemma3 architecture needs {'; '.join(problems)}")
    writer.add_sliding_window(local.options.get("window", 0) + 1)


GGUF_NAMES = {"attn_q_norm": "self_attn.q_norm", "attn_k_norm": "self_attn.k_norm",
              "post_attention_norm": "post_attention_layernorm", "ffn_norm": "pre_feedforward_layernorm",
              "post_ffw_norm": "post_feedforward_layernorm"}
GEMMA3 = Architecture("gemma3_text", "Gemma3ForCausalLM", model_config, rules, hf_config, adopts=True, ct2=False,
                      gguf=GGUFLayout("gemma3", tensors=GGUF_NAMES, config=gguf_config, weight=gguf_weight,
                                      stored=gguf_stored, metadata=gguf_metadata, local_attention=True))
