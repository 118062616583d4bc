"""Falcon-H1 (TII, ``FalconH1ForCausalLM``): every layer runs GQA attention and a Mamba-2 mixer side by side on
the same normed input and adds their outputs (our ``parallel_mamba2`` layer), then a SwiGLU FFN; pre-norm RMSNorm,
RoPE. The Mamba-2 inner width may differ from ``mamba_expand · hidden_size`` (``mamba_d_ssm`` → ``ssm.inner``) and
its output norm is optional (``mamba_rms_norm``, ``mamba_norm_before_gate`` → ``ssm.output_norm``).

Falcon-H1 is trained with µP multipliers. The embedding's and the LM head's become ``embed_multiplier`` and
``output_scale``; the others each scale a linear map's input or output, so conversion folds them into that map's
weights (:func:`folded`) and the export writes them as 1.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from ...config import ModelConfig
from ...errors import ConfigError
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
from .granite import (
    MAMBA_GGUF_NAMES,
    add_ssm_metadata,
    attention_rules,
    mamba_gguf_stored,
    mamba_gguf_weight,
    mamba_rules,
)


def ssm_sizes(hf: dict[str, Any]) -> tuple[int, int, int]:
    """(inner width, heads, head width) of the Mamba-2 mixer as transformers derives them."""
    inner = hf.get("mamba_d_ssm", 1024) or hf.get("mamba_expand", 2) * hf["hidden_size"]  # transformers' defaults
    heads = hf.get("mamba_n_heads", 128)
    head = hf.get("mamba_d_head", "auto")
    head = inner // heads if head in ("auto", None) else head
    if head * heads != inner:
        raise unsupported("mamba_n_heads", heads, f"mamba_n_heads · mamba_d_head must be the inner width {inner}")
    return inner, heads, head


def model_config(hf: dict[str, Any]) -> dict[str, Any]:
    require(hf, "hidden_act", ("silu",), "silu", "Falcon-H1's FFN is SwiGLU (silu)")
    limit = hf.get("time_step_limit")  # config.json writes infinity as {"__float__": "Infinity"}
    if limit is not None and (limit[0] != 0 or limit[1] not in (float("inf"), {"__float__": "Infinity"})):
        raise unsupported("time_step_limit", limit, "a clamped Mamba-2 time step")
    if bool(hf.get("mamba_proj_bias", False)) != bool(hf.get("projectors_bias", False)):
        raise unsupported("mamba_proj_bias", hf.get("mamba_proj_bias"), "it must equal projectors_bias (one bias "
                          "switch for in_proj and out_proj)")
    heads, hidden = hf["num_attention_heads"], hf["hidden_size"]
    head_dim = hf.get("head_dim") or hidden // heads
    inner, _, ssm_head = ssm_sizes(hf)
    expand = hf.get("mamba_expand", 2)
    norm = "none" if not hf.get("mamba_rms_norm", False) else (
        "before_gate" if hf.get("mamba_norm_before_gate", True) else "gated")
    ssm = {"state_size": hf.get("mamba_d_state", 256), "expand": expand, "head_dim": ssm_head,
           "inner": None if inner == expand * hidden else inner, "groups": hf.get("mamba_n_groups", 1),
           "conv_kernel_size": hf.get("mamba_d_conv", 4), "chunk_size": hf.get("mamba_chunk_size", 256),
           "bias": bool(hf.get("mamba_proj_bias", False)), "conv_bias": bool(hf.get("mamba_conv_bias", True)),
           "output_norm": norm}
    return {
        "arch": "decoder_lm", "vocab_size": hf["vocab_size"], "d_model": hidden, "heads": heads,
        "kv_heads": hf.get("num_key_value_heads") or heads,
        "head_dim": None if head_dim * heads == hidden else head_dim,
        "ffn_dim": hf["intermediate_size"], "activation": "swiglu", "norm": "rmsnorm", "norm_placement": "pre",
        "norm_eps": hf.get("rms_norm_eps", 1e-5), "dropout": 0.0, "position": "rope",
        "max_positions": hf.get("max_position_embeddings", 8192), **rope_settings(hf), "embed_scale": False,
        "embed_multiplier": hf.get("embedding_multiplier", 1.0), "output_scale": hf.get("lm_head_multiplier", 1.0),
        "tie_embeddings": bool(hf.get("tie_word_embeddings", False)),
        "attention_bias": bool(hf.get("attention_bias", False)), "qkv_bias": None,
        "ffn_bias": bool(hf.get("mlp_bias", False)),
        "bos_id": first_id(hf.get("bos_token_id")), "eos_id": first_id(hf.get("eos_token_id")),
        "pad_id": hf.get("pad_token_id"),
        "decoder": {"layers": hf["num_hidden_layers"], "layer": "parallel_mamba2", "ssm": ssm},
    }


FOLDED = ("key_multiplier", "attention_in_multiplier", "attention_out_multiplier", "ssm_in_multiplier",
          "ssm_out_multiplier")


def folded(hf: dict[str, Any]) -> Callable[[str, Tensor], Tensor]:
    """``weight(name, tensor)`` with Falcon-H1's multipliers folded in: a multiplier on a linear map's input
    scales its weight, one on its output scales weight and bias; ``ssm_multipliers`` scale the rows of
    ``in_proj`` that give z, x, B, C and dt."""
    attn_in, key = hf.get("attention_in_multiplier", 1.0), hf.get("key_multiplier", 1.0)
    gate, down = hf.get("mlp_multipliers") or (1.0, 1.0)
    inner, heads, _ = ssm_sizes(hf)
    bc = hf.get("mamba_n_groups", 1) * hf.get("mamba_d_state", 256)
    mup = torch.cat([torch.full((size,), float(m)) for size, m in zip(
        (inner, inner, bc, bc, heads), hf.get("ssm_multipliers") or (1.0,) * 5, strict=True)])
    output = {"self_attn.k_proj": key, "self_attn.o_proj": hf.get("attention_out_multiplier", 1.0),
              "mamba.out_proj": hf.get("ssm_out_multiplier", 1.0), "feed_forward.gate_proj": gate,
              "feed_forward.down_proj": down}
    inputs = {"self_attn.q_proj": attn_in, "self_attn.k_proj": attn_in, "self_attn.v_proj": attn_in,
              "mamba.in_proj": hf.get("ssm_in_multiplier", 1.0)}

    def weight(name: str, tensor: Tensor) -> Tensor:
        module, kind = name.rsplit(".", 1)
        module = module.split(".", 3)[-1]  # model.layers.N.<module>
        scale = output.get(module, 1.0) * (inputs.get(module, 1.0) if kind == "weight" else 1.0)
        if module == "mamba.in_proj":
            rows = mup.to(tensor.device)  # the meta device when conversion checks headers
            return tensor * scale * (rows[:, None] if kind == "weight" else rows)
        return tensor * scale if scale != 1.0 else tensor

    return weight


def rules(cfg: ModelConfig) -> list[Rule]:
    out = [Rule("embed.weight", ("model.embed_tokens.weight",))]
    for i in range(cfg.decoder.layers):
        hf, ours = f"model.layers.{i}", f"decoder.layers.{i}.sublayers"
        out += [Rule(f"{ours}.0.norm.weight", (f"{hf}.input_layernorm.weight",)),
                Rule(f"{ours}.1.norm.weight", (f"{hf}.pre_ff_layernorm.weight",))]
        out += attention_rules(f"{ours}.0.body.branches.0", f"{hf}.self_attn", cfg)
        out += mamba_rules(f"{ours}.0.body.branches.1", f"{hf}.mamba", cfg)
        out += gated_ffn_rules(ours, f"{hf}.feed_forward", cfg)
    return out + output_rules(cfg, "model.final_layernorm")


def hf_config(cfg: ModelConfig) -> dict[str, Any]:
    stack, ssm = cfg.decoder, cfg.decoder.ssm
    inner = ssm.inner or ssm.expand * cfg.d_model
    return {
        "model_type": "falcon_h1", "vocab_size": cfg.vocab_size, "hidden_size": cfg.d_model,
        "intermediate_size": cfg.ffn_dim, "num_hidden_layers": stack.layers, "num_attention_heads": cfg.heads,
        "num_key_value_heads": cfg.num_kv_heads, "head_dim": cfg.attention_head_dim, "hidden_act": "silu",
        "rms_norm_eps": cfg.norm_eps, "max_position_embeddings": cfg.max_positions,
        "rope_parameters": hf_rope_parameters(cfg), "tie_word_embeddings": cfg.tie_embeddings,
        "attention_bias": cfg.attention_bias, "mlp_bias": cfg.ffn_bias,
        "embedding_multiplier": cfg.embed_multiplier, "lm_head_multiplier": cfg.output_scale,
        **dict.fromkeys(FOLDED, 1.0), "mlp_multipliers": [1.0, 1.0], "ssm_multipliers": [1.0] * 5,  # in the weights
        "mamba_d_ssm": inner, "mamba_n_heads": inner // ssm.head_dim, "mamba_d_head": ssm.head_dim,
        "mamba_d_state": ssm.state_size, "mamba_expand": ssm.expand, "mamba_n_groups": ssm.groups,
        "mamba_d_conv": ssm.conv_kernel_size, "mamba_chunk_size": ssm.chunk_size, "mamba_proj_bias": ssm.bias,
        "projectors_bias": ssm.bias, "mamba_conv_bias": ssm.conv_bias, "mamba_rms_norm": ssm.output_norm != "none",
        "mamba_norm_before_gate": ssm.output_norm == "before_gate",
        "bos_token_id": cfg.bos_id, "eos_token_id": cfg.eos_id, "pad_token_id": cfg.pad_id,
    }


def gguf_config(field: Callable[[str], Any], tensors: set[str]) -> dict[str, Any]:
    """llama.cpp's falcon-h1 metadata as config.json fields; biases and the Mamba output norm show as tensors."""
    inner, heads, layer = field("ssm.inner_size"), field("ssm.time_step_rank"), "model.layers.0"
    proj_bias = f"{layer}.mamba.in_proj.bias" in tensors
    return {"mamba_d_ssm": inner, "mamba_n_heads": heads, "mamba_d_head": inner // heads,
            "mamba_d_state": field("ssm.state_size"), "mamba_n_groups": field("ssm.group_count"),
            "mamba_d_conv": field("ssm.conv_kernel"), "mamba_rms_norm": f"{layer}.mamba.norm.weight" in tensors,
            "mamba_norm_before_gate": False, "mamba_conv_bias": f"{layer}.mamba.conv1d.bias" in tensors,
            "mamba_proj_bias": proj_bias, "projectors_bias": proj_bias,
            "mlp_bias": f"{layer}.feed_forward.up_proj.bias" in tensors}


def gguf_stored(name: str, weight: Tensor, cfg: ModelConfig) -> Tensor:
    """What llama.cpp's converter does: its Mamba-2 changes, and the embedding and head multipliers folded into their
    weights (its runtime has no such scales)."""
    if name == "model.embed_tokens.weight":
        return weight * cfg.embed_multiplier
    return weight * cfg.output_scale if name == "lm_head.weight" else mamba_gguf_stored(name, weight, cfg)


def gguf_metadata(writer, cfg: ModelConfig) -> None:
    if cfg.decoder.ssm.output_norm == "before_gate":
        raise ConfigError("llama.cpp's falcon-h1 normalises Mamba-2's gated output (ssm.output_norm 'gated' or "
                          "'none'), not before the gate")
    if cfg.attention_bias:  # it loads attn_output.bias and never adds it
        raise ConfigError("llama.cpp's falcon-h1 ignores the attention biases (attention_bias; Falcon-H1 checkpoints "
                          "have none)")
    if cfg.tie_embeddings and (cfg.embed_multiplier, cfg.output_scale) != (1.0, 1.0):
        raise ConfigError("llama.cpp's falcon-h1 has no embedding or head multiplier, and a tied embedding cannot "
                          "hold both folded")
    add_ssm_metadata(writer, cfg)


GGUF_NAMES = {  # llama.cpp's falcon-h1 names -> HF's, where they are not the Llama ones (its ffn_norm has no suffix)
    "ffn_norm": "pre_ff_layernorm.weight", "ffn_gate": "feed_forward.gate_proj", "ffn_up": "feed_forward.up_proj",
    "ffn_down": "feed_forward.down_proj", **MAMBA_GGUF_NAMES, "output_norm.weight": "model.final_layernorm.weight",
}
FALCON_H1 = Architecture("falcon_h1", "FalconH1ForCausalLM", model_config, rules, hf_config, adopts=True, ct2=False,
                         fold=folded, gguf=GGUFLayout("falcon-h1", tensors=GGUF_NAMES, config=gguf_config,
                                                      weight=mamba_gguf_weight, stored=gguf_stored,
                                                      metadata=gguf_metadata))
