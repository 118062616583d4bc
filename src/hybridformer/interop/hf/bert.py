"""BERT (Devlin et al., 2019) and RoBERTa (Liu et al., 2019) encoders: ``model_type`` ``bert``, ``roberta``.

Quirks honoured: post-norm layers, an embedding LayerNorm over word + position + token-type (type 0)
embeddings, exact (erf) GELU, LayerNorm eps from the config (1e-12), and RoBERTa's learned positions
that start after the padding row (``position_offset = pad_id + 1``) and count only non-padding tokens
(``positions_skip_padding``). The converted model is a sentence encoder (``num_classes=0``): its output
is the mean of the non-padding token states, sentence-transformers' pooling. The pooler and any task
head (MLM, classification) are not converted.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from typing import Any

from torch import Tensor

from ...config import ModelConfig
from .weights import Entry, activation, linear, norm, refuse

MODEL_TYPES = ("bert", "roberta")


def model_config(hf: Mapping[str, Any], names: Collection[str], read: Callable[[str], Tensor]) -> ModelConfig:
    """Our ModelConfig of a BERT/RoBERTa ``config.json``."""
    roberta = hf.get("model_type") == "roberta"
    refuse(hf, "position_embedding_type", ("absolute",), "only absolute learned positions are converted")
    refuse(hf, "is_decoder", (False,), "a causal BERT decoder is not converted")
    refuse(hf, "add_cross_attention", (False,), "cross-attention in an encoder is not converted")
    pad = hf.get("pad_token_id", 1 if roberta else 0)
    offset = pad + 1 if roberta else 0
    special = {key: hf[f"{key[:3]}_token_id"] for key in ("bos_id", "eos_id") if hf.get(f"{key[:3]}_token_id")
               is not None}
    return ModelConfig(
        arch="encoder_classifier", num_classes=0, vocab_size=hf["vocab_size"], d_model=hf["hidden_size"],
        heads=hf["num_attention_heads"], ffn_dim=hf["intermediate_size"], activation=activation(hf, "hidden_act"),
        norm="layernorm", norm_eps=hf.get("layer_norm_eps", 1e-12), norm_placement="post",
        dropout=hf.get("hidden_dropout_prob", 0.1), position="learned", position_offset=offset,
        max_positions=hf.get("max_position_embeddings", 512) - offset, positions_skip_padding=roberta,
        type_vocab_size=hf.get("type_vocab_size", 2), layernorm_embedding=True, embed_scale=False,
        pad_id=pad, encoder={"layers": hf["num_hidden_layers"]}, **special,
    )


def weight_plan(cfg: ModelConfig, names: Collection[str] = ()) -> list[Entry]:
    """Our parameter names <- BERT tensor names (``bert.``/``roberta.`` prefixes found in ``names`` kept)."""
    prefix = next((p for p in ("bert.", "roberta.") if f"{p}embeddings.word_embeddings.weight" in names), "")
    plan = [Entry("embed.weight", ("embeddings.word_embeddings.weight",)),
            Entry("encoder.absolute.table.weight", ("embeddings.position_embeddings.weight",))]
    if cfg.type_vocab_size:
        plan.append(Entry("encoder.token_type.weight", ("embeddings.token_type_embeddings.weight",)))
    plan += norm("encoder.embed_norm", "embeddings.LayerNorm")
    for i in range(cfg.encoder.layers):
        ours, hf = f"encoder.layers.{i}.sublayers", f"encoder.layer.{i}"
        attn = f"{hf}.attention.self"
        plan += linear(f"{ours}.0.body.qkv_proj", (f"{attn}.query", f"{attn}.key", f"{attn}.value"))
        plan += linear(f"{ours}.0.body.out_proj", f"{hf}.attention.output.dense")
        plan += norm(f"{ours}.0.norm", f"{hf}.attention.output.LayerNorm")
        plan += linear(f"{ours}.1.body.linear1", f"{hf}.intermediate.dense")
        plan += linear(f"{ours}.1.body.linear2", f"{hf}.output.dense")
        plan += norm(f"{ours}.1.norm", f"{hf}.output.LayerNorm")
    return [Entry(e.ours, tuple(prefix + n for n in e.hf), e.squeeze, e.alternatives) for e in plan]
