"""Granite-4.0-H, dense (``GraniteMoeHybridForCausalLM`` with ``num_local_experts=0``): Mamba-2 layers and
GQA attention layers in series, each followed by a SwiGLU FFN (``shared_mlp``); pre-norm RMSNorm.

``layer_types`` names each layer ``mamba`` (``linear_attention`` in transformers 5) or ``attention``: the
stack's ``layer`` is ``mamba2`` and ``decoder.layer_types`` marks the attention layers. Granite's
multipliers map onto model options: ``embedding_multiplier`` → ``embed_multiplier``,
``residual_multiplier`` → ``residual_multiplier``, ``attention_multiplier`` → ``score_scale``, and
``logits_scaling`` → ``output_scale = 1 / logits_scaling``. Attention has RoPE only with
``position_embedding_type: rope`` (Granite-4.0-H itself uses none).

In GGUF (llama.cpp's ``granitehybrid``): 0 key/value heads mark a Mamba-2 layer, the FFN's fused ``input_linear``
is split into ``ffn_gate`` and ``ffn_up``, Mamba-2's tensors as llama.cpp's Mamba-2 converter stores them (shared
with Falcon-H1), the multipliers as ``*_scale`` keys, and ``rope.scaling.finetuned`` switches RoPE on.
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
    hf_rope_parameters,
    output_rules,
    require,
    rope_settings,
    unsupported,
)

MAMBA = ("mamba", "linear_attention")


def model_config(hf: dict[str, Any]) -> dict[str, Any]:
    require(hf, "num_local_experts", (0,), 8, "mixture-of-experts layers; the dense Granite-4.0-H models convert")
    require(hf, "hidden_act", ("silu",), "silu", "Granite's FFN is SwiGLU (silu)")
    limit = hf.get("time_step_limit")  # config.json writes infinity as {"__float__": "Infinity"}
    if limit is not None and (limit[0] != 0 or limit[1] not in (float("inf"), {"__float__": "Infinity"})):
        raise unsupported("time_step_limit", limit, "a clamped Mamba-2 time step")
    heads, hidden, layers = hf["num_attention_heads"], hf["hidden_size"], hf["num_hidden_layers"]
    head_dim = hidden // heads
    kinds = hf.get("layer_types") or ["mamba"] * layers
    mamba = any(kind in MAMBA for kind in kinds)
    inner = hf.get("mamba_expand", 2) * hidden
    ssm_head = hf.get("mamba_d_head", "auto")
    ssm_head = inner // hf.get("mamba_n_heads", 128) if ssm_head == "auto" else ssm_head
    if inner // ssm_head != hf.get("mamba_n_heads", 128):
        raise unsupported("mamba_n_heads", hf.get("mamba_n_heads"), f"it must be mamba_expand·hidden_size / "
                          f"mamba_d_head = {inner // ssm_head}")
    stack = {
        "layers": layers, "layer": "mamba2" if mamba else "transformer",
        "layer_types": {i: "transformer" for i, kind in enumerate(kinds) if kind not in MAMBA} if mamba else {},
        "ssm": {"state_size": hf.get("mamba_d_state", 256), "expand": hf.get("mamba_expand", 2), "head_dim": ssm_head,
                "groups": hf.get("mamba_n_groups", 1), "conv_kernel_size": hf.get("mamba_d_conv", 4),
                "chunk_size": hf.get("mamba_chunk_size", 256), "bias": bool(hf.get("mamba_proj_bias", False)),
                "conv_bias": bool(hf.get("mamba_conv_bias", True))},
    }
    rope = hf.get("position_embedding_type") == "rope"
    score = hf.get("attention_multiplier", 1.0)
    bias = bool(hf.get("attention_bias", False))
    return {
        "arch": "decoder_lm", "vocab_size": hf["vocab_size"], "d_model": hidden, "heads": heads,
        "kv_heads": hf.get("num_key_value_heads") or heads, "ffn_dim": hf["shared_intermediate_size"],
        "activation": "swiglu", "norm": "rmsnorm", "norm_placement": "pre", "norm_eps": hf.get("rms_norm_eps", 1e-6),
        "dropout": 0.0, "position": "rope" if rope else "none",
        "max_positions": hf.get("max_position_embeddings", 2048), **(rope_settings(hf) if rope else {}),
        "embed_scale": False, "embed_multiplier": hf.get("embedding_multiplier", 1.0),
        "residual_multiplier": hf.get("residual_multiplier", 1.0),
        "score_scale": None if score == head_dim**-0.5 else score,
        "output_scale": 1.0 / hf.get("logits_scaling", 1.0),
        "tie_embeddings": bool(hf.get("tie_word_embeddings", False)),
        "attention_bias": bias, "qkv_bias": None, "ffn_bias": False,
        "bos_id": first_id(hf.get("bos_token_id")), "eos_id": first_id(hf.get("eos_token_id")),
        "pad_id": hf.get("pad_token_id"), "decoder": stack,
    }


def copies(ours: str, hf: str, names: list[str]) -> list[Rule]:
    """Tensors stored under the same names on both sides, below ``ours`` and ``hf``."""
    return [Rule(f"{ours}.{name}", (f"{hf}.{name}",)) for name in names]


def mamba_rules(ours: str, hf: str, cfg: ModelConfig) -> list[Rule]:
    ssm = cfg.decoder.ssm
    names = ["dt_bias", "A_log", "D", "in_proj.weight", "out_proj.weight"]
    names += [] if ssm.output_norm == "none" else ["norm.weight"]
    names += ["in_proj.bias", "out_proj.bias"] if ssm.bias else []
    conv = Rule(f"{ours}.conv.weight", (f"{hf}.conv1d.weight",), convert=lambda w: w.squeeze(1),
                restore=lambda w: w.unsqueeze(1))  # nn.Conv1d stores (C, 1, k)
    rules = [*copies(ours, hf, names), conv]
    return rules + ([Rule(f"{ours}.conv.bias", (f"{hf}.conv1d.bias",))] if ssm.conv_bias else [])


def attention_rules(ours: str, hf: str, cfg: ModelConfig) -> list[Rule]:
    hd = cfg.attention_head_dim
    sizes = (cfg.heads * hd, cfg.num_kv_heads * hd, cfg.num_kv_heads * hd)
    kinds = ["weight", "bias"] if cfg.attention_bias else ["weight"]
    return [rule for kind in kinds for rule in (
        Rule(f"{ours}.qkv_proj.{kind}", tuple(f"{hf}.{p}_proj.{kind}" for p in "qkv"), sizes),
        Rule(f"{ours}.out_proj.{kind}", (f"{hf}.o_proj.{kind}",)))]


def rules(cfg: ModelConfig) -> list[Rule]:
    out = [Rule("embed.weight", ("model.embed_tokens.weight",))]
    for i in range(cfg.decoder.layers):
        hf, ours = f"model.layers.{i}", f"decoder.layers.{i}.sublayers"
        out += [Rule(f"{ours}.0.norm.weight", (f"{hf}.input_layernorm.weight",)),
                Rule(f"{ours}.1.norm.weight", (f"{hf}.post_attention_layernorm.weight",)),
                Rule(f"{ours}.1.body.linear1.weight", (f"{hf}.shared_mlp.input_linear.weight",)),
                Rule(f"{ours}.1.body.linear2.weight", (f"{hf}.shared_mlp.output_linear.weight",))]
        if cfg.decoder.layer_of(i) == "mamba2":
            out += mamba_rules(f"{ours}.0.body", f"{hf}.mamba", cfg)
        else:
            out += attention_rules(f"{ours}.0.body", f"{hf}.self_attn", cfg)
    return out + output_rules(cfg, "model.norm")


def hf_config(cfg: ModelConfig) -> dict[str, Any]:
    stack, ssm = cfg.decoder, cfg.decoder.ssm
    rope = cfg.position == "rope"
    return {
        "model_type": "granitemoehybrid", "vocab_size": cfg.vocab_size, "hidden_size": cfg.d_model,
        "num_hidden_layers": stack.layers, "num_attention_heads": cfg.heads, "num_key_value_heads": cfg.num_kv_heads,
        "shared_intermediate_size": cfg.ffn_dim, "intermediate_size": cfg.ffn_dim, "num_local_experts": 0,
        "hidden_act": "silu", "rms_norm_eps": cfg.norm_eps, "max_position_embeddings": cfg.max_positions,
        "position_embedding_type": "rope" if rope else "nope",
        **({"rope_parameters": hf_rope_parameters(cfg)} if rope else {}),
        "embedding_multiplier": cfg.embed_multiplier, "residual_multiplier": cfg.residual_multiplier,
        "attention_multiplier": cfg.attention_head_dim**-0.5 if cfg.score_scale is None else cfg.score_scale,
        "logits_scaling": 1.0 / cfg.output_scale, "attention_bias": cfg.attention_bias,
        "tie_word_embeddings": cfg.tie_embeddings,
        "layer_types": ["linear_attention" if stack.layer_of(i) == "mamba2" else "full_attention"
                        for i in range(stack.layers)],
        "mamba_n_heads": ssm.expand * cfg.d_model // ssm.head_dim, "mamba_d_head": ssm.head_dim,
        "mamba_d_state": ssm.state_size, "mamba_expand": ssm.expand, "mamba_n_groups": ssm.groups,
        "mamba_d_conv": ssm.conv_kernel_size, "mamba_chunk_size": ssm.chunk_size, "mamba_proj_bias": ssm.bias,
        "mamba_conv_bias": ssm.conv_bias,
        "bos_token_id": cfg.bos_id, "eos_token_id": cfg.eos_id, "pad_token_id": cfg.pad_id,
    }


def mamba_gguf_weight(name: str, weight: Tensor) -> Tensor:
    """Undo llama.cpp's Mamba-2 converter: it stores A = -exp(A_log) and D as (heads, 1), the conv kernels as
    (channels, k) and the norm as (groups, channels / group)."""
    if name.endswith("mamba.A_log"):
        return torch.log(-weight).reshape(-1)
    if name.endswith(("mamba.D", "mamba.norm.weight")):
        return weight.reshape(-1)
    return weight.unsqueeze(1) if name.endswith("mamba.conv1d.weight") and weight.dim() == 2 else weight


def mamba_gguf_stored(name: str, weight: Tensor, cfg: ModelConfig) -> Tensor:
    """What llama.cpp's Mamba-2 converter does: :func:`mamba_gguf_weight` inverted."""
    if name.endswith("mamba.A_log"):
        return -torch.exp(weight).reshape(-1, 1)
    if name.endswith("mamba.D"):
        return weight.reshape(-1, 1)
    if name.endswith("mamba.norm.weight"):
        return weight.reshape(cfg.decoder.ssm.groups, -1)
    return weight.squeeze(1) if name.endswith("mamba.conv1d.weight") else weight


def add_ssm_metadata(writer, cfg: ModelConfig) -> None:
    """llama.cpp's Mamba-2 keys (its ``time_step_rank`` is the number of SSM heads)."""
    ssm = cfg.decoder.ssm
    if ssm.bias:  # llama.cpp refuses a file holding ssm_in/ssm_out biases ("wrong number of tensors")
        raise ConfigError("llama.cpp's Mamba-2 layers have no in/out projection biases (ssm.bias; Granite-4.0-H and "
                          "Falcon-H1 checkpoints have none)")
    inner = ssm.inner or ssm.expand * cfg.d_model
    writer.add_ssm_conv_kernel(ssm.conv_kernel_size)
    writer.add_ssm_inner_size(inner)
    writer.add_ssm_state_size(ssm.state_size)
    writer.add_ssm_time_step_rank(inner // ssm.head_dim)
    writer.add_ssm_group_count(ssm.groups)


def gguf_config(field: Callable[[str], Any], tensors: set[str]) -> dict[str, Any]:
    """llama.cpp's granitehybrid metadata as config.json fields: 0 key/value heads mark a Mamba-2 layer; its unset
    multipliers and query scale take llama.cpp's defaults; biases show as tensors."""
    layers = field("block_count")
    kv = field("attention.head_count_kv")
    kv = kv if isinstance(kv, list) else [kv] * layers
    attention = next((i for i, n in enumerate(kv) if n), None)
    mamba = next((i for i, n in enumerate(kv) if not n), None)
    hidden, inner, heads = field("embedding_length"), field("ssm.inner_size"), field("ssm.time_step_rank")
    head_dim = field("attention.key_length") or hidden // field("attention.head_count")
    return {"num_key_value_heads": max(kv) or None, "layer_types": ["attention" if n else "mamba" for n in kv],
            "num_local_experts": 0,  # llama.cpp's converter writes the dense FFN's width under either key
            "shared_intermediate_size": field("expert_shared_feed_forward_length") or field("feed_forward_length"),
            "mamba_n_heads": heads, "mamba_d_head": inner // heads, "mamba_expand": inner // hidden,
            "mamba_d_state": field("ssm.state_size"), "mamba_n_groups": field("ssm.group_count"),
            "mamba_d_conv": field("ssm.conv_kernel"),
            "mamba_conv_bias": mamba is not None and f"model.layers.{mamba}.mamba.conv1d.bias" in tensors,
            "attention_bias": attention is not None and f"model.layers.{attention}.self_attn.o_proj.bias" in tensors,
            "position_embedding_type": "nope" if field("rope.scaling.finetuned") is False else "rope",
            "embedding_multiplier": field("embedding_scale") or 1.0,
            "residual_multiplier": field("residual_scale") or 1.0,
            "attention_multiplier": field("attention.scale") or head_dim**-0.5,
            "logits_scaling": field("logit_scale") or 1.0}


def gguf_metadata(writer, cfg: ModelConfig) -> None:
    """The multipliers and Mamba-2 keys; what llama.cpp's granitehybrid cannot run is refused."""
    ssm = cfg.decoder.ssm
    problems = [need for need, ok in (
        ("a Mamba-2 inner width of 2 x d_model (ssm.expand 2, no ssm.inner)", ssm.expand == 2 and not ssm.inner),
        ("the gated Mamba-2 output norm (ssm.output_norm 'gated')", ssm.output_norm == "gated")) if not ok]
    if problems:
        raise ConfigError(f"llama.cpp's granitehybrid architecture needs {'; '.join(problems)}")
    add_ssm_metadata(writer, cfg)
    writer.add_attention_scale(cfg.attention_head_dim**-0.5 if cfg.score_scale is None else cfg.score_scale)
    writer.add_embedding_scale(cfg.embed_multiplier)
    writer.add_residual_scale(cfg.residual_multiplier)
    writer.add_logit_scale(1.0 / cfg.output_scale)
    writer.add_rope_scaling_finetuned(cfg.position == "rope")  # llama.cpp's granitehybrid: RoPE on or off


MAMBA_GGUF_NAMES = {  # llama.cpp's Mamba-2 names -> HF's (Granite-4.0-H, Falcon-H1)
    "ssm_in": "mamba.in_proj", "ssm_conv1d": "mamba.conv1d", "ssm_out": "mamba.out_proj", "ssm_norm": "mamba.norm",
    "ssm_a": "mamba.A_log", "ssm_d": "mamba.D", "ssm_dt.bias": "mamba.dt_bias",
}
GRANITE_HYBRID = Architecture(
    "granitemoehybrid", "GraniteMoeHybridForCausalLM", model_config, rules, hf_config, adopts=True, ct2=False,
    gguf=GGUFLayout("granitehybrid", permuted_qk=True,  # dense: llama.cpp's ffn_*, not the shared-expert names
                    tensors={**MAMBA_GGUF_NAMES, "ffn_down": "shared_mlp.output_linear"},
                    fused={"shared_mlp.input_linear": ("ffn_gate", "ffn_up")}, config=gguf_config,
                    weight=mamba_gguf_weight, stored=mamba_gguf_stored, metadata=gguf_metadata))
