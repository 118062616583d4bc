"""The Llama family (Llama 1-3, Mistral, Qwen2, SmolLM): pre-norm RMSNorm, SwiGLU, rotary positions
in the ``rotate_half`` layout (our RoPE's layout), grouped-query attention, no biases but Qwen2's q/k/v
biases, a tied or untied output projection. Mistral's sliding window becomes our ``sliding_window``
kernel (HF lets a query see ``sliding_window`` keys including itself: our ``window`` is one less).
"""

from __future__ import annotations

from typing import Any

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
    unsupported,
)


def refuse_qwen_window(hf: dict[str, Any]) -> None:
    if hf.get("use_sliding_window") or "sliding_attention" in (hf.get("layer_types") or ()):
        raise unsupported("use_sliding_window", True, "Qwen's sliding window on some layers only")


def model_config(hf: dict[str, Any]) -> dict[str, Any]:
    model_type = hf.get("model_type", "llama")
    require(hf, "hidden_act", ("silu",), "silu", "the Llama family uses SwiGLU (silu)")
    require(hf, "pretraining_tp", (None, 1), 1, "tensor-parallel slicing of the projections")
    if hf.get("quantization_config"):
        raise unsupported("quantization_config", hf["quantization_config"].get("quant_method", "?"),
                          "convert a float checkpoint (or the GGUF file)")
    heads, hidden = hf["num_attention_heads"], hf["hidden_size"]
    head_dim = hf.get("head_dim") or hidden // heads
    attention: dict[str, Any] = {"name": "full"}
    if model_type == "qwen2":
        refuse_qwen_window(hf)
        bias = {"attention_bias": False, "qkv_bias": True, "ffn_bias": False}
    else:
        bias = {"attention_bias": bool(hf.get("attention_bias", False)), "qkv_bias": None,
                "ffn_bias": bool(hf.get("mlp_bias", False))}
        window = hf.get("sliding_window") if model_type == "mistral" else None
        if window is not None:
            attention = {"name": "sliding_window", "window": int(window) - 1}
    return {
        "arch": "decoder_lm", "vocab_size": hf["vocab_size"], "d_model": hidden, "heads": heads,
        "kv_heads": hf.get("num_key_value_heads") or heads,
        "head_dim": None if head_dim * heads == hidden else head_dim,
        "ffn_dim": hf["intermediate_size"], "activation": "swiglu", "norm": "rmsnorm", "norm_placement": "pre",
        "norm_eps": hf.get("rms_norm_eps", 1e-6), "dropout": 0.0, "position": "rope",
        "max_positions": hf.get("max_position_embeddings", 2048), **rope_settings(hf),
        "embed_scale": False, "tie_embeddings": bool(hf.get("tie_word_embeddings", False)), **bias,
        "bos_id": first_id(hf.get("bos_token_id")), "eos_id": first_id(hf.get("eos_token_id")),
        "pad_id": hf.get("pad_token_id"),
        "decoder": {"layers": hf["num_hidden_layers"], "layer": "transformer", "attention": attention},
    }


LLAMA_NORMS = {"0.norm": "input_layernorm", "1.norm": "post_attention_layernorm"}  # our sublayer -> HF norm


def rules(cfg: ModelConfig, norms: dict[str, str] = LLAMA_NORMS) -> list[Rule]:
    """Llama-layout tensors; ``norms`` names each sublayer's norms (Gemma's sandwich has four), and a model with
    ``qk_norm`` reads ``self_attn.q_norm``/``k_norm`` (Qwen3, Gemma 3)."""
    hd = cfg.attention_head_dim
    q, kv = cfg.heads * hd, cfg.num_kv_heads * hd
    out = [Rule("embed.weight", ("model.embed_tokens.weight",))]
    for i in range(cfg.decoder.layers):
        hf, ours = f"model.layers.{i}", f"decoder.layers.{i}.sublayers"
        attn = [f"{hf}.self_attn.{p}_proj" for p in "qkv"]
        out += [Rule(f"{ours}.{mine}.weight", (f"{hf}.{theirs}.weight",)) for mine, theirs in norms.items()]
        out += [
            Rule(f"{ours}.0.body.qkv_proj.weight", tuple(f"{a}.weight" for a in attn), (q, kv, kv)),
            Rule(f"{ours}.0.body.out_proj.weight", (f"{hf}.self_attn.o_proj.weight",)),
        ]
        out += gated_ffn_rules(ours, f"{hf}.mlp", cfg)
        if cfg.qk_norm:
            out += [Rule(f"{ours}.0.body.{p}_norm.weight", (f"{hf}.self_attn.{p}_norm.weight",)) for p in "qk"]
        if cfg.qkv_bias if cfg.qkv_bias is not None else cfg.attention_bias:
            out.append(Rule(f"{ours}.0.body.qkv_proj.bias", tuple(f"{a}.bias" for a in attn), (q, kv, kv)))
        if cfg.attention_bias:
            out.append(Rule(f"{ours}.0.body.out_proj.bias", (f"{hf}.self_attn.o_proj.bias",)))
    return out + output_rules(cfg, "model.norm")


def hf_config(cfg: ModelConfig, model_type: str) -> dict[str, Any]:
    """config.json of ``cfg`` as a ``model_type`` (llama, mistral or qwen2; others start from it) model."""
    attention = cfg.decoder.attention
    config: dict[str, Any] = {
        "model_type": model_type, "vocab_size": cfg.vocab_size, "hidden_size": cfg.d_model,
        "intermediate_size": cfg.ffn_dim, "num_hidden_layers": cfg.decoder.layers,
        "num_attention_heads": cfg.heads, "num_key_value_heads": cfg.num_kv_heads,
        "head_dim": cfg.attention_head_dim, "hidden_act": "silu", "max_position_embeddings": cfg.max_positions,
        "rms_norm_eps": cfg.norm_eps, "rope_parameters": hf_rope_parameters(cfg),
        "tie_word_embeddings": cfg.tie_embeddings, "bos_token_id": cfg.bos_id, "eos_token_id": cfg.eos_id,
        "pad_token_id": cfg.pad_id, "attention_dropout": 0.0,
    }
    if model_type == "qwen2":
        config.update(use_sliding_window=False, sliding_window=None)
    elif model_type == "mistral":
        config["sliding_window"] = attention.options["window"] + 1 if attention.name == "sliding_window" else None
    else:
        config.update(attention_bias=cfg.attention_bias, mlp_bias=cfg.ffn_bias)
    return config


def blockers(cfg: ModelConfig) -> list[str]:
    """What in ``cfg`` Hugging Face's Llama/Mistral/Qwen2 cannot represent (empty: exportable)."""
    problems = []
    if cfg.arch != "decoder_lm":
        problems.append(f"arch={cfg.arch!r} (export supports decoder-only Llama-family models)")
    stack = cfg.decoder
    layer_types = {"decoder.layer": stack.layer} | {f"decoder.layer_types.{i}": t for i, t in stack.layer_types.items()}
    for where, kind in layer_types.items():
        if kind != "transformer":
            problems.append(f"{where}={kind!r} (convolution/SSM/hybrid layers)")
    attentions = {f"decoder.attention={stack.attention.name!r}": stack.attention} | {
        f"decoder.layer_attention.{i}={a.name!r}": a for i, a in stack.layer_attention.items()}
    for where, attention in attentions.items():
        windowed = attention.name == "sliding_window" and not attention.options.get("num_global")
        if attention.name != "full" and not windowed:
            problems.append(f"{where} (sparse, linear or low-rank attention)")
    if stack.layer_attention:
        problems.append("decoder.layer_attention (per-layer attention overrides)")
    if stack.layer_rope_scaling:
        problems.append("decoder.layer_rope_scaling (per-layer RoPE scaling)")
    problems += [f"decoder.{where}.rope_base (an attention's own RoPE base)"
                 for where, attention in stack.attentions().items() if attention.rope_base is not None]
    checks = {
        "position": ("rope", "positions"), "norm": ("rmsnorm", "norm"), "norm_placement": ("pre", "norm placement"),
        "residual": ("standard", "DeepNet/ReZero residuals"), "activation": ("swiglu", "FFN activation"),
        "embed_scale": (False, "embedding scale"), "qk_norm": (False, "query/key norms"),
    }
    for name, (wanted, what) in checks.items():
        if getattr(cfg, name) != wanted:
            problems.append(f"{name}={getattr(cfg, name)!r} ({what})")
    if cfg.pruned_heads:
        problems.append("pruned_heads (heads pruned per layer)")
    if cfg.quantization:
        problems.append(f"quantization={cfg.quantization!r} (int8 weights)")
    if cfg.rope_scaling is not None and cfg.rope_scaling.type == "ntk":
        problems.append("rope_scaling.type='ntk' (static NTK has no Hugging Face equivalent)")
    if cfg.qkv_bias is not None and cfg.qkv_bias != cfg.attention_bias and (cfg.attention_bias or not cfg.qkv_bias):
        problems.append("qkv_bias/attention_bias combination")
    return problems


def qkv_bias_only(cfg: ModelConfig) -> bool:
    """Biases on q, k and v only: Qwen2's layout."""
    return bool(cfg.qkv_bias and not cfg.attention_bias)


def qwen2_blockers(cfg: ModelConfig) -> list[str]:
    problems = blockers(cfg)
    if not qkv_bias_only(cfg):
        problems.append("a qwen2 model has q/k/v biases only (qkv_bias=True, attention_bias=False)")
    return problems


def windowed(cfg: ModelConfig) -> bool:
    return cfg.decoder.attention.name == "sliding_window"


def _architecture(model_type: str, hf_class: str, **spec: Any) -> Architecture:
    spec.setdefault("export_blockers", blockers)
    return Architecture(model_type, hf_class, model_config, rules, lambda cfg: hf_config(cfg, model_type), **spec)


# a model made here exports as Qwen2 when it has q/k/v biases only, else as Mistral when windowed, else as Llama
LLAMA = _architecture("llama", "LlamaForCausalLM", claims=lambda cfg: not qkv_bias_only(cfg) and not windowed(cfg),
                      gguf=GGUFLayout("llama", permuted_qk=True))
MISTRAL = _architecture("mistral", "MistralForCausalLM", claims=lambda cfg: not qkv_bias_only(cfg) and windowed(cfg),
                        gguf=GGUFLayout("llama", permuted_qk=True))  # llama.cpp writes Mistral as llama
QWEN2 = _architecture("qwen2", "Qwen2ForCausalLM", claims=qkv_bias_only, export_blockers=qwen2_blockers,
                      gguf=GGUFLayout("qwen2"))
