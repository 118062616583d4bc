"""Phi-3 (``Phi3ForCausalLM``): the Llama layout with the q/k/v projections fused into ``qkv_proj`` and
gate/up into ``gate_up_proj`` (which are our own fused layouts, so each is one copied tensor), no biases,
and LongRoPE ("su") scaling in the 128k models. Phi-3's ``sliding_window`` becomes our window kernel,
as Mistral's does.
"""

from __future__ import annotations

from typing import Any

from ...config import ModelConfig
from ..rules import Rule
from . import llama
from .common import Architecture, output_rules


def model_config(hf: dict[str, Any]) -> dict[str, Any]:
    hf = {**hf, "hidden_act": hf.get("hidden_act", "silu"), "attention_bias": False, "mlp_bias": False}
    return llama.model_config({**hf, "model_type": "mistral"})  # Mistral's reading of sliding_window


def rules(cfg: ModelConfig) -> list[Rule]:
    out = [Rule("embed.weight", ("model.embed_tokens.weight",))]
    for i in range(cfg.decoder.layers):
        hf, ours = f"model.layers.{i}", f"decoder.layers.{i}.sublayers"
        out += [
            Rule(f"{ours}.0.norm.weight", (f"{hf}.input_layernorm.weight",)),
            Rule(f"{ours}.0.body.qkv_proj.weight", (f"{hf}.self_attn.qkv_proj.weight",)),
            Rule(f"{ours}.0.body.out_proj.weight", (f"{hf}.self_attn.o_proj.weight",)),
            Rule(f"{ours}.1.norm.weight", (f"{hf}.post_attention_layernorm.weight",)),
            Rule(f"{ours}.1.body.linear1.weight", (f"{hf}.mlp.gate_up_proj.weight",)),
            Rule(f"{ours}.1.body.linear2.weight", (f"{hf}.mlp.down_proj.weight",)),
        ]
    return out + output_rules(cfg, "model.norm")


def hf_config(cfg: ModelConfig) -> dict[str, Any]:
    config = llama.hf_config(cfg, "mistral") | {"model_type": "phi3"}
    scaling = cfg.rope_scaling
    if scaling is not None and scaling.original_max_positions:
        config["original_max_position_embeddings"] = scaling.original_max_positions
    return config


PHI3 = Architecture("phi3", "Phi3ForCausalLM", model_config, rules, hf_config)
