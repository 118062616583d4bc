"""T5 (Raffel et al., 2020) v1.0 and v1.1 / Flan-T5: ``model_type`` ``t5``.

Quirks honoured: RMSNorm without mean subtraction or bias (T5LayerNorm), no linear biases, attention
scores not scaled (``score_scale=1``), one relative-position bucket bias per stack computed once and
shared by all its layers (HF keeps it in layer 0), ReLU (v1.0) or gated tanh-GELU (v1.1) feed-forwards,
``d_kv`` as the head width, decoder states scaled by d_model**-0.5 before a tied output projection
(``output_scale``), and the decoder starting from the pad token.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from typing import Any

from torch import Tensor

from ...config import ModelConfig
from ...errors import ConfigError
from .weights import Entry, linear, norm, tied

MODEL_TYPES = ("t5",)
FEED_FORWARD = {"relu": "relu", "gelu": "gelu", "gated-gelu": "geglu_tanh", "gated-gelu_new": "geglu_tanh",
                "gated-silu": "swiglu"}


def model_config(hf: Mapping[str, Any], names: Collection[str], read: Callable[[str], Tensor]) -> ModelConfig:
    """Our ModelConfig of a T5 ``config.json``."""
    proj = hf.get("feed_forward_proj", "relu")
    if proj not in FEED_FORWARD:
        raise ConfigError(f"config.json: feed_forward_proj={proj!r} is not supported; supported: "
                          f"{', '.join(FEED_FORWARD)}")
    if hf.get("is_encoder_decoder", True) is not True:
        raise ConfigError("config.json: is_encoder_decoder=false is not supported (T5 is an encoder-decoder)")
    d_model, heads, d_kv = hf["d_model"], hf["num_heads"], hf.get("d_kv", hf["d_model"] // hf["num_heads"])
    # transformers: the original T5 scales decoder outputs; v1.1 (saved with tie_word_embeddings=false) does not
    scale = hf.get("scale_decoder_outputs", hf.get("tie_word_embeddings", True) is not False)
    start = hf.get("decoder_start_token_id")
    pad = hf.get("pad_token_id", 0)
    start = pad if start is None else start
    return ModelConfig(
        arch="encoder_decoder", vocab_size=hf["vocab_size"], d_model=d_model, heads=heads,
        head_dim=None if d_kv * heads == d_model else d_kv, ffn_dim=hf["d_ff"], activation=FEED_FORWARD[proj],
        norm="rmsnorm", norm_eps=hf.get("layer_norm_epsilon", 1e-6), norm_placement="pre",
        dropout=hf.get("dropout_rate", 0.1), position="t5", t5_buckets=hf.get("relative_attention_num_buckets", 32),
        t5_max_distance=hf.get("relative_attention_max_distance", 128), embed_scale=False,
        attention_bias=False, ffn_bias=False, score_scale=1.0,
        tie_embeddings=tied(names, read, "lm_head.weight", "shared.weight"), share_embeddings=True,
        output_scale=d_model**-0.5 if scale else 1.0, pad_id=pad, bos_id=start, eos_id=hf.get("eos_token_id", 1),
        decoder_start_id=start,
        encoder={"layers": hf["num_layers"]},
        decoder={"layers": hf.get("num_decoder_layers") or hf["num_layers"]},
    )


def weight_plan(cfg: ModelConfig, names: Collection[str] = ()) -> list[Entry]:
    """Our parameter names <- T5 tensor names."""
    shared = Entry("src_embed.weight", ("shared.weight",),
                   alternatives=("encoder.embed_tokens.weight", "decoder.embed_tokens.weight"))
    plan = [shared, Entry("tgt_embed.weight", shared.hf, alternatives=shared.alternatives)]
    plan.append(Entry("output.weight", shared.hf, alternatives=shared.alternatives) if cfg.tie_embeddings
                else Entry("output.weight", ("lm_head.weight",)))
    gated = cfg.activation in ("geglu_tanh", "geglu", "swiglu")
    for role, layers in (("encoder", cfg.encoder.layers), ("decoder", cfg.decoder.layers)):
        plan.append(Entry(f"{role}.score_bias.table.weight",
                          (f"{role}.block.0.layer.0.SelfAttention.relative_attention_bias.weight",)))
        plan += norm(f"{role}.final_norm", f"{role}.final_layer_norm", bias=False)
        for i in range(layers):
            ours, hf = f"{role}.layers.{i}.sublayers", f"{role}.block.{i}.layer"
            attn = f"{hf}.0.SelfAttention"
            plan += linear(f"{ours}.0.body.qkv_proj", (f"{attn}.q", f"{attn}.k", f"{attn}.v"), bias=False)
            plan += linear(f"{ours}.0.body.out_proj", f"{attn}.o", bias=False)
            plan += norm(f"{ours}.0.norm", f"{hf}.0.layer_norm", bias=False)
            if role == "decoder":
                attn = f"{hf}.1.EncDecAttention"
                plan += linear(f"{ours}.1.body.q_proj", f"{attn}.q", bias=False)
                plan += linear(f"{ours}.1.body.kv_proj", (f"{attn}.k", f"{attn}.v"), bias=False)
                plan += linear(f"{ours}.1.body.out_proj", f"{attn}.o", bias=False)
                plan += norm(f"{ours}.1.norm", f"{hf}.1.layer_norm", bias=False)
            ffn, dense = (2, f"{hf}.2.DenseReluDense") if role == "decoder" else (1, f"{hf}.1.DenseReluDense")
            inputs = (f"{dense}.wi_0", f"{dense}.wi_1") if gated else f"{dense}.wi"
            plan += linear(f"{ours}.{ffn}.body.linear1", inputs, bias=False)
            plan += linear(f"{ours}.{ffn}.body.linear2", f"{dense}.wo", bias=False)
            plan += norm(f"{ours}.{ffn}.norm", f"{hf}.{ffn}.layer_norm", bias=False)
    return plan
