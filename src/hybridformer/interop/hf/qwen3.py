"""Qwen3: the Llama layout plus RMSNorm on each head's queries and keys before RoPE (QK-norm), with
``attention_bias`` on all four attention projections (Qwen2 had q/k/v biases only).
"""

from __future__ import annotations

from typing import Any

from ...config import ModelConfig
from . import llama
from .common import Architecture, GGUFLayout

QK_NORMS = {"attn_q_norm": "self_attn.q_norm", "attn_k_norm": "self_attn.k_norm"}  # llama.cpp -> HF names


def model_config(hf: dict[str, Any]) -> dict[str, Any]:
    llama.refuse_qwen_window(hf)
    return llama.model_config(hf) | {"qk_norm": True}


def hf_config(cfg: ModelConfig) -> dict[str, Any]:
    return llama.hf_config(cfg, "qwen3") | {"use_sliding_window": False, "sliding_window": None}


QWEN3 = Architecture("qwen3", "Qwen3ForCausalLM", model_config, llama.rules, hf_config, adopts=True, ct2=False,
                     gguf=GGUFLayout("qwen3", tensors=QK_NORMS))
