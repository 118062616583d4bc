"""Qwen3: the Llama layout plus RMSNorm on each head's queries and keys before RoPE (QK-norm), with
``attention_bias`` on all four attention projections (Qwen2 had q/k/v biases only).
"""

from __future__ import annotations

from typing import Any

from ...config import ModelConfig
from ...errors import ConfigError
from . import llama
from .common import Architecture, GGUFLayout

QK_NORMS = {"attn_q_norm": "self_attn.q_norm", "attn_k_norm": "self_attn.k_norm"}  # llama.cpp -> HF names


def model_config(hf: dict[str, Any]) -> dict[str, Any]:
    llama.refuse_qwen_window(hf)
    return llama.model_config(hf) | {"qk_norm": True}


def hf_config(cfg: ModelConfig) -> dict[str, Any]:
    return llama.hf_config(cfg, "qwen3") | {"use_sliding_window": False, "sliding_window": None}


def gguf_metadata(writer, cfg: ModelConfig) -> None:
    if cfg.attention_bias:  # llama.cpp refuses a file holding attn_output.bias: "wrong number of tensors"
        raise ConfigError("llama.cpp's qwen3 architecture has no output-projection bias (attention_bias; Qwen3 "
                          "checkpoints have none)")


QWEN3 = Architecture("qwen3", "Qwen3ForCausalLM", model_config, llama.rules, hf_config, adopts=True, ct2=False,
                     gguf=GGUFLayout("qwen3", tensors=QK_NORMS, metadata=gguf_metadata))
