"""Export to CTranslate2 (Klein et al., 2020), the C++ inference engine behind OpenNMT and faster-whisper.

The export goes through CTranslate2's own converter API: :class:`HybridformerConverter` is a
``ctranslate2.converters.Converter`` whose ``_load`` fills a ``TransformerSpec`` (encoder-decoder)
or ``TransformerDecoderModelSpec`` (decoder-only) from the weights of a loaded checkpoint, so
validation, quantization and the on-disk format are CTranslate2's. Only models whose every layer
CTranslate2 computes the same way are exported; anything else is refused by :func:`ct2_blockers`
with one line naming it. The export folder also holds the checkpoint's side files (tokenizer, chat
template) and its own config (under the key ``hybridformer`` of CTranslate2's ``config.json``), so
``generate --engine ct2`` and ``serve`` need nothing else.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .. import structured
from ..attention import CrossAttention, MultiHeadAttention
from ..attention.head_subset import HeadSubsetKernel
from ..checkpoint import Checkpoint, load_checkpoint, write_checkpoint_dir
from ..config import ModelConfig
from ..errors import CheckpointError, ConfigError
from ..ffn import GATED, FeedForward
from ..filenames import CONFIG, CT2_WEIGHTS  # config.json: CTranslate2's, our ModelConfig under "hybridformer"
from ..outputs import prepare_output_dir
from ..position import LearnedPositions, SinusoidalPositions
from ..rope_scaling import default_inv_freq
from .conversion import source_architecture

QUANTIZATIONS = ("float32", "int8", "int8_float32", "bfloat16")
SINUSOID_ROWS = 2048  # rows of the sinusoidal table written into the export (its longest sequence)
# ModelConfig fields the export reads; any other field must keep its default (ct2_blockers checks).
UNDERSTOOD = {
    "arch", "vocab_size", "d_model", "heads", "kv_heads", "ffn_dim", "activation", "norm", "norm_placement",
    "residual", "dropout", "position", "max_positions", "rope_base", "t5_buckets", "t5_max_distance",
    "embed_scale", "tie_embeddings", "share_embeddings", "num_classes", "pad_id", "bos_id", "eos_id", "extra_eos_ids",
    "encoder", "decoder", "cross_attention", "pruned_heads", "quantization", "position_offset", "rope_scaling",
    "head_dim", "norm_eps", "attention_bias", "qkv_bias", "ffn_bias", "decoder_start_id", "score_scale",
    "sinusoid_layout", "layernorm_embedding", "final_logits_bias", "output_scale",
}
FREQUENCY_SCALINGS = ("llama3", "yarn")  # RoPE scalings exported as per-frequency factors
# linear: CTranslate2's own; ntk: a larger base; llama3, yarn: per-frequency factors (its "su" scaling).
# dynamic scaling changes the base with the sequence length, which CTranslate2 cannot express.
ROPE_SCALINGS = ("linear", "ntk", "llama3", "yarn")


def require_ctranslate2():
    """The ``ctranslate2`` module, or a one-line error saying how to install it."""
    try:
        import ctranslate2
    except ImportError:
        raise ConfigError("the ct2 engine needs CTranslate2: pip install 'hybridformer[ct2]' "
                          "(or pip install ctranslate2)") from None
    return ctranslate2


def ct2_blockers(ckpt: Checkpoint) -> list[str]:
    """Why CTranslate2 cannot run this model (empty when it can), one reason per line."""
    cfg, model, problems = ckpt.config, ckpt.model, []
    default = ModelConfig()
    for name in sorted(set(type(cfg).model_fields) - UNDERSTOOD):
        if getattr(cfg, name) != getattr(default, name):
            problems.append(f"{name}={getattr(cfg, name)!r} is not supported by the CTranslate2 export")
    if cfg.arch == "encoder_classifier":
        problems.append("arch='encoder_classifier': CTranslate2 translates and generates; a classifier has no "
                        "decoder to export")
        return problems
    for role in ("encoder", "decoder") if cfg.is_seq2seq else ("decoder",):
        hybrid = sorted(getattr(cfg, role).layer_kinds() - {"transformer"})
        if hybrid:
            problems.append(f"{role} layer type(s) {', '.join(hybrid)} (convolution/SSM/hybrid layers): CTranslate2 "
                            "runs Transformer layers only")
    problems += [f"{role}.{where}.rope_base: CTranslate2 rotates every layer with the model's one RoPE base"
                 for role in ("encoder", "decoder") for where, attention in getattr(cfg, role).attentions().items()
                 if attention.rope_base is not None]
    if cfg.norm_placement == "sandwich" or cfg.norm == "offset_rmsnorm":
        problems.append(f"norm={cfg.norm!r}, norm_placement={cfg.norm_placement!r}: CTranslate2 has plain pre/post "
                        "LayerNorm or RMSNorm only")
    source = source_architecture(ckpt.path)
    if source is not None and not source.ct2:
        problems.append(f"model_type={source.model_type!r}: its spec offers no CTranslate2 export")
    if cfg.residual != "standard":
        problems.append(f"residual={cfg.residual!r} (DeepNet/ReZero scaling): CTranslate2 has plain residuals only")
    if cfg.quantization is not None:
        problems.append(f"quantization={cfg.quantization!r}: export the float checkpoint and pass --quantization "
                        "int8 instead")
    if cfg.rope_scaling is not None and cfg.rope_scaling.type not in ROPE_SCALINGS:
        problems.append(f"rope_scaling.type={cfg.rope_scaling.type!r}: its RoPE base grows with the sequence "
                        "length; CTranslate2's rotation frequencies are fixed (exportable: "
                        f"{', '.join(ROPE_SCALINGS)})")
    if cfg.is_seq2seq and cfg.position in ("rope", "alibi"):
        problems.append(f"position={cfg.position!r} in an encoder-decoder: CTranslate2 applies RoPE/ALiBi in "
                        "decoder-only models only")
    if problems:
        return problems
    kernels = sorted({_kernel(m).__class__.__name__ for m in model.modules()
                      if isinstance(m, MultiHeadAttention | CrossAttention)
                      and not _kernel(m).is_exact})
    if kernels:
        problems.append(f"attention {', '.join(kernels)} (sparse, linear or low-rank): CTranslate2 computes full "
                        "softmax attention only")
    counts = {m.heads for m in model.modules() if isinstance(m, MultiHeadAttention | CrossAttention)}
    if len(counts) > 1:
        problems.append(f"pruned heads with unequal counts per layer ({sorted(counts)}): CTranslate2 needs one "
                        "head count for every attention layer")
    if cfg.pruned_heads and cfg.position == "alibi":
        problems.append("pruned heads with ALiBi: CTranslate2 recomputes the slopes from the head count and "
                        "cannot keep the pruned model's narrowed slopes")
    return problems


def _kernel(module: nn.Module) -> nn.Module:
    kernel = module.kernel
    return kernel.inner if isinstance(kernel, HeadSubsetKernel) else kernel


def converter(ckpt: Checkpoint):
    """A ``ctranslate2.converters.Converter`` for ``ckpt``; refuses (one line) what CTranslate2 cannot run."""
    ct2 = require_ctranslate2()
    problems = ct2_blockers(ckpt)
    if problems:
        raise ConfigError(f"{ckpt.path}: cannot export to CTranslate2: {'; '.join(problems)}")
    return _converter_class(ct2.converters.Converter)(ckpt)


@functools.cache
def _converter_class(base: type) -> type:
    """The converter class, made on first use so that ``ctranslate2`` stays an optional import."""

    class HybridformerConverter(base):
        def __init__(self, ckpt: Checkpoint) -> None:
            self.ckpt = ckpt

        def _load(self):
            return build_spec(self.ckpt)

    return HybridformerConverter


def export_ct2(checkpoint: str | Path | Checkpoint, out: str | Path, *, quantization: str = "float32",
               overwrite: bool = False, progress: Callable[[int, int], None] | None = None) -> Path:
    """Write the CTranslate2 model of ``checkpoint`` to the folder ``out`` (atomically), with its tokenizer.

    ``quantization``: the weight type CTranslate2 stores (float32, int8, int8_float32, bfloat16).
    ``progress(done, 2)`` follows the two steps: CTranslate2's conversion, then the tokenizer files.
    """
    progress = progress or (lambda done, total: None)
    if quantization not in QUANTIZATIONS:
        raise ConfigError(f"--quantization must be one of {', '.join(QUANTIZATIONS)}, got {quantization!r}")
    ckpt = checkpoint if isinstance(checkpoint, Checkpoint) else load_checkpoint(checkpoint)
    if ckpt.tokenizer is None:
        raise CheckpointError(f"{ckpt.path}: no tokenizer.json; the export needs the tokenizer the model was "
                              "trained with")
    conv = converter(ckpt)
    out = prepare_output_dir(out, overwrite=overwrite, inputs=[ckpt.path])

    def fill(tmp: Path) -> None:
        progress(0, 2)
        conv.convert(str(tmp), quantization=quantization, force=True)
        progress(1, 2)
        ckpt.side_files.write(tmp)  # the tokenizer, and a converted instruct model's chat template
        progress(2, 2)

    return write_checkpoint_dir(out, fill)


def is_ct2_export(path: str | Path) -> bool:
    """A folder written by :func:`export_ct2` (CTranslate2's files plus our config and tokenizer)."""
    return (Path(path) / CT2_WEIGHTS).is_file() and exported_config(path) is not None


def exported_config(path: str | Path) -> dict | None:
    """The hybridformer ModelConfig (as a dict) stored in an export's ``config.json``, if any."""
    try:
        data = structured.read(Path(path) / CONFIG, error=CheckpointError)
    except CheckpointError:
        return None
    return data.get("hybridformer") if isinstance(data, dict) else None


# ----------------------------------------------------------------------------- spec filling


def build_spec(ckpt: Checkpoint):
    """The filled ``TransformerSpec`` / ``TransformerDecoderModelSpec`` of a checked checkpoint."""
    from ctranslate2.specs import common_spec, transformer_spec

    cfg, model = ckpt.config, ckpt.model
    heads = next(m.heads for m in model.modules() if isinstance(m, MultiHeadAttention))
    head_dim = cfg.attention_head_dim
    kv_heads = next(m.kv_heads for m in model.modules() if isinstance(m, MultiHeadAttention))
    common = dict(
        pre_norm=cfg.norm_placement == "pre", activation=_activation(cfg, common_spec.Activation),
        ffn_glu=cfg.activation in GATED, rms_norm=cfg.norm == "rmsnorm",
        relative_attention_bias=cfg.position == "t5",
        num_heads_kv=kv_heads if kv_heads != heads else None,
        head_dim=head_dim if heads * head_dim != cfg.d_model else None,
        layernorm_embedding=cfg.layernorm_embedding,
    )
    if cfg.is_seq2seq:
        encoder = transformer_spec.TransformerEncoderSpec(cfg.encoder.layers, heads, **common)
        decoder = transformer_spec.TransformerDecoderSpec(cfg.decoder.layers, heads, with_encoder_attention=True,
                                                          **common)
        spec = transformer_spec.TransformerSpec(encoder, decoder)
        _fill_stack(encoder, model.encoder, model.src_embed, cfg)
        _fill_stack(decoder, model.decoder, model.tgt_embed, cfg)
        vocab = vocabulary(ckpt)
        spec.register_source_vocabulary(vocab)
        spec.register_target_vocabulary(vocab)
        spec.config.decoder_start_token = vocab[cfg.start_id]  # BART: eos, T5 and Marian: pad
    else:
        rope = cfg.position == "rope"
        decoder = transformer_spec.TransformerDecoderSpec(
            cfg.decoder.layers, heads, with_encoder_attention=False, alibi=cfg.position == "alibi",
            rotary_dim=0 if rope else None, rotary_interleave=False, **_rotary(cfg), **common)
        spec = transformer_spec.TransformerDecoderModelSpec(decoder)
        _fill_stack(decoder, model.decoder, model.embed, cfg)
        if rope and cfg.rope_scaling is not None and cfg.rope_scaling.type in FREQUENCY_SCALINGS:
            _per_frequency_factors(decoder, model.decoder.rope)
        vocab = vocabulary(ckpt)
        spec.register_vocabulary(vocab)
    if cfg.output_scale != 1.0:  # tied T5, Granite: decoder states scaled before the projection
        decoder.scale_outputs = np.dtype("float32").type(cfg.output_scale)
    _linear(decoder.projection, model.output)  # with its bias: BART's and Marian's final_logits_bias
    spec.config.bos_token, spec.config.eos_token = vocab[cfg.bos_id], vocab[cfg.eos_id]
    spec.config.unk_token = "<unk>" if "<unk>" in vocab else vocab[cfg.eos_id]
    spec.config.layer_norm_epsilon = cfg.norm_eps
    spec.config.add_attribute("hybridformer", cfg.model_dump())  # CTranslate2 ignores keys it does not know
    return spec


def _rotary(cfg: ModelConfig) -> dict:
    """RoPE base and scaling as CTranslate2 options (static NTK scaling is RoPE with a larger base)."""
    scaling = cfg.rope_scaling
    if scaling is None:
        return {"rotary_base": cfg.rope_base}
    if scaling.type == "ntk":
        dim = cfg.attention_head_dim
        return {"rotary_base": cfg.rope_base * scaling.factor ** (dim / (dim - 2))}
    from ctranslate2.specs.attention_spec import RotaryScalingType

    if scaling.type in FREQUENCY_SCALINGS:  # factors filled by _per_frequency_factors
        return {"rotary_base": cfg.rope_base, "rotary_scaling_type": RotaryScalingType.Su}
    return {"rotary_base": cfg.rope_base, "rotary_scaling_type": RotaryScalingType.Linear,
            "rotary_scaling_factor": scaling.factor}


def _per_frequency_factors(decoder, rope: nn.Module) -> None:
    """llama3 and YaRN as CTranslate2's per-frequency ("su"/LongRoPE) scaling: frequency i is
    ``base^(-2i/d) / factor_i``, with the factors read off our own scaled frequencies, so both engines
    rotate by the same angles. YaRN's attention factor multiplies cos and sin, hence q·k by its square:
    it goes into the query scale. ``max_position_embeddings`` stays unset, so CTranslate2 adds no
    cos/sin scale of its own, and short and long factors are equal (its length switch is moot)."""
    plain = default_inv_freq(rope.head_dim, rope.base)
    factors = _array(plain / rope.inv_freq)
    for layer in decoder.layer:
        attention = layer.self_attention
        attention.rotary_scaling_long_factor = factors
        attention.rotary_scaling_short_factor = factors.copy()
        if rope.attention_factor != 1.0:
            attention.queries_scale = np.dtype("float32").type(attention.queries_scale * rope.attention_factor**2)


def _activation(cfg: ModelConfig, activation):
    return {"relu": activation.RELU, "gelu": activation.GELU, "gelu_tanh": activation.GELUTanh,
            "silu": activation.SWISH, "swiglu": activation.SWISH, "geglu": activation.GELU,
            "geglu_tanh": activation.GELUTanh}[cfg.activation]


def _fill_stack(spec, stack: nn.Module, embed: nn.Embedding, cfg: ModelConfig) -> None:
    """Embeddings, positions, layers and final norm of one stack (encoder or decoder)."""
    embeddings = spec.embeddings[0] if isinstance(spec.embeddings, list) else spec.embeddings
    embeddings.weight = _array(embed.weight)
    spec.scale_embeddings = cfg.embed_scale
    if hasattr(spec, "position_encodings"):
        spec.position_encodings.encodings = _position_table(stack.absolute, cfg)
    if stack.final_norm is not None:
        _norm(spec.layer_norm, stack.final_norm)
    if stack.embed_norm is not None:  # BART's layernorm_embedding, after embeddings + positions (as ours)
        _norm(spec.layernorm_embedding, stack.embed_norm)
    bias_table = stack.score_bias.table.weight if cfg.position == "t5" else None
    for layer_spec, layer in zip(spec.layer, stack.layers, strict=True):
        self_attn, *cross, ffn = layer.sublayers
        _self_attention(layer_spec.self_attention, self_attn, bias_table, cfg)
        if cross:
            _attention(layer_spec.attention, cross[0])
            _linear(layer_spec.attention.linear[0], cross[0].body.q_proj)
            _linear(layer_spec.attention.linear[1], cross[0].body.kv_proj)
            _linear(layer_spec.attention.linear[2], cross[0].body.out_proj)
        _ffn(layer_spec.ffn, ffn)


def _position_table(absolute: nn.Module | None, cfg: ModelConfig) -> np.ndarray:
    """The absolute position table, written out (CTranslate2's own sinusoid orders sin/cos differently)."""
    if isinstance(absolute, LearnedPositions):
        return _array(absolute.table.weight[absolute.offset:])
    if isinstance(absolute, SinusoidalPositions):  # either layout (Marian: all sines, then all cosines)
        return SinusoidalPositions.compute(cfg.d_model, SINUSOID_ROWS, absolute.layout).numpy()
    return np.zeros((SINUSOID_ROWS, cfg.d_model), dtype=np.float32)  # position='none' (or relative only)


def _self_attention(spec, residual: nn.Module, bias_table: torch.Tensor | None, cfg: ModelConfig) -> None:
    _attention(spec, residual)
    attn = residual.body
    _linear(spec.linear[0], attn.qkv_proj)
    _linear(spec.linear[1], attn.out_proj)
    if bias_table is not None:
        kept = getattr(attn.kernel, "kept", None)
        table = bias_table if kept is None else bias_table.index_select(1, kept)
        spec.relative_attention_bias = _array(table)
        spec.relative_attention_max_distance = np.dtype("int32").type(cfg.t5_max_distance)


def _attention(spec, residual: nn.Module) -> None:
    """The norm and the score scale (T5: 1, from ``score_scale``; else 1/√head_dim)."""
    _norm(spec.layer_norm, residual.norm)
    body = residual.body
    scale = 1.0 / math.sqrt(body.head_dim) if body.q_scale is None else body.q_scale / math.sqrt(body.head_dim)
    spec.queries_scale = np.dtype("float32").type(scale)


def _ffn(spec, residual: nn.Module) -> None:
    ffn: FeedForward = residual.body
    _norm(spec.layer_norm, residual.norm)
    if ffn.gated:  # act(first half) * second half
        weight, gate = ffn.linear1.weight.chunk(2, dim=0)
        bias, gate_bias = ffn.linear1.bias.chunk(2) if ffn.linear1.bias is not None else (None, None)
        _set_linear(spec.linear_0, weight, bias)
        _set_linear(spec.linear_0_noact, gate, gate_bias)
    else:
        _linear(spec.linear_0, ffn.linear1)
    _linear(spec.linear_1, ffn.linear2)


def _linear(spec, linear: nn.Linear) -> None:
    _set_linear(spec, linear.weight, linear.bias)


def _set_linear(spec, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
    spec.weight = _array(weight)
    if bias is not None:
        spec.bias = _array(bias)


def _norm(spec, norm: nn.Module) -> None:
    spec.gamma = _array(norm.weight)
    if isinstance(norm, nn.LayerNorm):
        spec.beta = _array(norm.bias)


def _array(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().to("cpu", torch.float32).contiguous().numpy().copy()


def vocabulary(ckpt: Checkpoint) -> list[str]:
    """One token string per model id: the tokenizer's, then ``<extra_N>`` for rows it does not use."""
    size = ckpt.config.vocab_size
    tokens = [ckpt.tokenizer.id_to_token(i) for i in range(size)]
    seen = set()
    for i, token in enumerate(tokens):
        if token is None or token in seen:
            tokens[i] = f"<extra_{i}>"
        seen.add(tokens[i])
    return tokens
