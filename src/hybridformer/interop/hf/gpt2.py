"""GPT-2 (Radford et al., 2019): ``model_type`` ``gpt2``.

Quirks honoured: ``Conv1D`` weights stored as ``(in, out)`` (transposed here), q/k/v fused in one
``c_attn``, tanh GELU (``gelu_new``), learned positions from row 0, pre-norm LayerNorm with a final
``ln_f``, biases everywhere, a head tied to ``wte``. GPT-2 has no token free for padding (its one
special token, ``<|endoftext|>``, is BOS and EOS), so unless config.json names a pad token the pad id
is ``vocab_size``: outside the vocabulary, embedded as zeros and never a logit, so the logits over the
real vocabulary are transformers' exactly. Folders saved from ``GPT2Model`` (names without the
``transformer.`` prefix, as the original checkpoints are) convert too. In GGUF (llama.cpp's ``gpt2``), as
llama.cpp's converter writes it: the ``Conv1D`` weights transposed to ``(out, in)``, the tanh GELU implied.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import Tensor

from ...config import ModelConfig
from ...errors import ConfigError
from ..rules import Rule
from .common import Architecture, GGUFLayout, first_id, require
from .weights import HF_ACTIVATIONS, activation

PREFIX = "transformer."


def model_config(hf: dict[str, Any]) -> dict[str, Any]:
    """ModelConfig data of a GPT-2 ``config.json``."""
    require(hf, "scale_attn_weights", (True,), True, "attention scores are always scaled by 1/sqrt(head_dim)")
    require(hf, "scale_attn_by_inverse_layer_idx", (False,), False, "a per-layer score scale is not implemented")
    require(hf, "add_cross_attention", (False,), False, "cross-attention in a decoder-only model")
    d_model, vocab = hf["n_embd"], hf["vocab_size"]
    pad = hf.get("pad_token_id")
    return {
        "arch": "decoder_lm", "vocab_size": vocab, "d_model": d_model, "heads": hf["n_head"],
        "ffn_dim": hf.get("n_inner") or 4 * d_model, "activation": activation(hf, "activation_function"),
        "norm": "layernorm", "norm_placement": "pre", "norm_eps": hf.get("layer_norm_epsilon", 1e-5),
        "dropout": hf.get("resid_pdrop", 0.1), "position": "learned", "position_offset": 0,
        "max_positions": hf.get("n_positions", 1024), "embed_scale": False,
        "tie_embeddings": bool(hf.get("tie_word_embeddings", True)),
        "bos_id": first_id(hf.get("bos_token_id")), "eos_id": first_id(hf.get("eos_token_id")),
        "pad_id": vocab if pad is None else pad, "decoder": {"layers": hf["n_layer"], "layer": "transformer"},
    }


def rules(cfg: ModelConfig) -> list[Rule]:
    """Our tensors <- GPT-2 tensors (``Conv1D`` weights transposed)."""
    t = PREFIX
    out = [Rule("embed.weight", (f"{t}wte.weight",)), Rule("decoder.absolute.table.weight", (f"{t}wpe.weight",))]
    for i in range(cfg.decoder.layers):
        hf, ours = f"{t}h.{i}", f"decoder.layers.{i}.sublayers"
        for mine, theirs in (("0.body.qkv_proj", "attn.c_attn"), ("0.body.out_proj", "attn.c_proj"),
                             ("1.body.linear1", "mlp.c_fc"), ("1.body.linear2", "mlp.c_proj")):
            out += [Rule(f"{ours}.{mine}.weight", (f"{hf}.{theirs}.weight",), transpose=True),
                    Rule(f"{ours}.{mine}.bias", (f"{hf}.{theirs}.bias",))]
        for mine, theirs in (("0.norm", "ln_1"), ("1.norm", "ln_2")):
            out += [Rule(f"{ours}.{mine}.{p}", (f"{hf}.{theirs}.{p}",)) for p in ("weight", "bias")]
    out += [Rule(f"decoder.final_norm.{p}", (f"{t}ln_f.{p}",)) for p in ("weight", "bias")]
    if not cfg.tie_embeddings:
        out.append(Rule("output.weight", ("lm_head.weight",)))
    return out


def hf_config(cfg: ModelConfig) -> dict[str, Any]:
    """config.json of ``cfg`` as a GPT-2 model (no pad token when ours lies outside the vocabulary)."""
    return {
        "model_type": "gpt2", "vocab_size": cfg.vocab_size, "n_embd": cfg.d_model, "n_head": cfg.heads,
        "n_layer": cfg.decoder.layers, "n_inner": cfg.ffn_dim, "n_positions": cfg.max_positions,
        "activation_function": HF_ACTIVATIONS[cfg.activation], "layer_norm_epsilon": cfg.norm_eps,
        "resid_pdrop": cfg.dropout, "embd_pdrop": cfg.dropout, "attn_pdrop": 0.0,
        "tie_word_embeddings": cfg.tie_embeddings, "bos_token_id": cfg.bos_id, "eos_token_id": cfg.eos_id,
        "pad_token_id": cfg.pad_id if cfg.pad_in_vocab else None,
    }


def gguf_config(field: Callable[[str], Any], tensors: set[str]) -> dict[str, Any]:
    """llama.cpp's gpt2 metadata as config.json fields."""
    return {"n_embd": field("embedding_length"), "n_head": field("attention.head_count"),
            "n_layer": field("block_count"), "n_positions": field("context_length"),
            "n_inner": field("feed_forward_length"), "layer_norm_epsilon": field("attention.layer_norm_epsilon"),
            "activation_function": "gelu_new"}


def gguf_weight(name: str, weight: Tensor, cfg: ModelConfig | None = None) -> Tensor:
    """``Conv1D``'s ``(in, out)`` weights <-> llama.cpp's ``(out, in)`` (the same transposition either way)."""
    return weight.t() if name.endswith(("c_attn.weight", "c_proj.weight", "c_fc.weight")) else weight


def gguf_metadata(writer, cfg: ModelConfig) -> None:
    if cfg.activation != "gelu_tanh":
        raise ConfigError(f"llama.cpp's gpt2 architecture uses the tanh GELU (activation 'gelu_tanh'), not "
                          f"{cfg.activation!r}")


GGUF_NAMES = {"token_embd.weight": "transformer.wte.weight", "position_embd.weight": "transformer.wpe.weight",
              "output_norm.weight": "transformer.ln_f.weight", "output_norm.bias": "transformer.ln_f.bias",
              "attn_norm": "ln_1", "attn_qkv": "attn.c_attn", "attn_output": "attn.c_proj", "ffn_norm": "ln_2",
              "ffn_up": "mlp.c_fc", "ffn_down": "mlp.c_proj"}
GPT2 = Architecture("gpt2", "GPT2LMHeadModel", model_config, rules, hf_config, head="lm_head.weight", prefix=PREFIX,
                    adopts=True, gguf=GGUFLayout("gpt2", tensors=GGUF_NAMES, layers="transformer.h", config=gguf_config,
                                                 weight=gguf_weight, stored=gguf_weight, metadata=gguf_metadata))
