"""Validated, nested configuration (pydantic), loaded from YAML with ``a.b=c`` overrides.

Config stops at the builders: modules receive plain arguments, never a config object.
Every validation failure surfaces as one :class:`ConfigError` naming the full key path,
the bad value and what is allowed.
"""

from __future__ import annotations

import math
import typing
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import torch
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

from . import structured
from .attention import ATTENTION, kernel_options
from .blocks import LAYERS
from .errors import ConfigError, brief

__all__ = [
    "AttentionConfig",
    "ConvConfig",
    "SSMConfig",
    "StackConfig",
    "ModelConfig",
    "RopeScaling",
    "ConfigError",
    "load_config",
    "parse_config",
    "apply_overrides",
]


class _Strict(BaseModel):
    # NaN/inf are never a meaningful setting (``lr=inf`` would diverge and exit 0)
    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=(), allow_inf_nan=False)


class AttentionConfig(BaseModel):
    """``{name: <mechanism>, <option>: <value>, ...}``; options are the kernel's keyword-only parameters."""

    model_config = ConfigDict(extra="allow", protected_namespaces=())

    name: str = "full"
    # this layer's own RoPE base, unscaled (Gemma 3's local layers: 10k beside 1M globally); None = the model's
    rope_base: float | None = Field(None, gt=1.0)

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})

    @model_validator(mode="after")
    def _check_name_and_options(self) -> AttentionConfig:
        if self.name not in ATTENTION:
            raise ValueError(f"unknown attention {self.name!r}; allowed: {', '.join(sorted(ATTENTION))}")
        allowed = kernel_options(ATTENTION[self.name])
        for key in self.options:
            if key not in allowed:
                raise ValueError(
                    f"option {key!r} is not accepted by attention {self.name!r}; "
                    f"allowed: {', '.join(allowed) or '(none)'}"
                )
        self.__pydantic_extra__.update(check_kernel_options(self.name, self.options))
        return self


def check_kernel_options(name: str, options: dict[str, Any]) -> dict[str, Any]:
    """``options`` coerced to the kernel's annotated parameter types, then checked by the kernel itself.

    The kernel is constructed on the meta device (no memory), so its own range checks run when the
    config loads: ``config check`` accepts exactly what training builds.
    """
    kernel_cls = ATTENTION[name]
    hints = typing.get_type_hints(kernel_cls.__init__)
    coerced = {}
    for key, value in options.items():
        try:
            coerced[key] = TypeAdapter(hints.get(key, Any)).validate_python(value)
        except ValidationError as exc:
            raise ValueError(f"{key}={brief(value)}: {exc.errors()[0]['msg']}") from None
        if isinstance(coerced[key], float) and not math.isfinite(coerced[key]):
            raise ValueError(f"{key}={brief(value)} must be a finite number")
    try:
        with torch.device("meta"):
            kernel_cls(**coerced)
    except (ValueError, TypeError, RuntimeError, OverflowError) as exc:
        raise ValueError(str(exc).removeprefix(f"attention {name!r}: ")) from None
    return coerced


class ConvConfig(_Strict):
    """Options of the convolution mixers and the conv-hybrid layer types (docs/conv.md)."""

    kernel_size: int = Field(15, ge=1, le=4096)  # every convolution mixer's kernel width
    heads: int = Field(8, ge=1)  # lightweight/dynamic convolution: heads sharing one softmax-normalised kernel
    weight_dropout: float = Field(0.0, ge=0.0, lt=1.0)  # DropConnect on lightweight/dynamic kernels
    lsra_split: float = Field(0.5, gt=0.0, lt=1.0)  # lsra: share of channels given to the attention branch
    lsra_conv: Literal["lightweight", "dynamic"] = "lightweight"  # lsra: the convolution branch
    merge: Literal["concat", "learned"] = "concat"  # branchformer: concat + projection, or learned weights
    merge_kernel_size: int = Field(3, ge=1)  # ebranchformer: depthwise merge convolution width
    cgmlp_dim: int | None = Field(None, ge=2)  # (e)branchformer cgMLP hidden width; None = ffn_dim
    short_kernel_size: int = Field(3, ge=1, le=4096)  # shortconv: its causal depthwise kernel (LFM2: 3)

    def layer_parts(self) -> dict[str, Any]:
        """These options as ``LayerParts`` keyword arguments (``conv_<key>``)."""
        return {f"conv_{key}": value for key, value in self.model_dump().items()}


class SSMConfig(_Strict):
    """Options of the Mamba-2 mixer (layer ``mamba2``, docs/ssm.md)."""

    state_size: int = Field(64, ge=1)  # N: state channels per group (B and C)
    expand: int = Field(2, ge=1)  # inner width = expand · d_model
    head_dim: int = Field(64, ge=1)  # P: channels per SSM head; heads = inner / head_dim
    groups: int = Field(1, ge=1)  # B/C groups shared by the heads (like GQA's key/value heads)
    conv_kernel_size: int = Field(4, ge=1, le=4096)  # the causal depthwise convolution before the scan
    chunk_size: int = Field(64, ge=1)  # chunked scan: positions per chunk (a speed knob; results are equal)
    bias: bool = False  # biases of in_proj and out_proj
    conv_bias: bool = True
    inner: int | None = Field(None, ge=1)  # inner width when not expand · d_model (Falcon-H1's mamba_d_ssm)
    output_norm: Literal["gated", "before_gate", "none"] = "gated"  # RMSNorm(y·SiLU(z)) | RMSNorm(y)·SiLU(z) | none

    def layer_parts(self) -> dict[str, Any]:
        return {f"ssm_{key}": value for key, value in self.model_dump().items()}


class RopeScaling(_Strict):
    """RoPE frequency scaling for contexts past the trained length (formulas: ``hybridformer.rope_scaling``).

    ``original_max_positions``: the trained context (llama3, yarn) or the length past which dynamic
    scaling starts; None = ``model.max_positions``.
    """

    type: Literal["linear", "dynamic", "ntk", "llama3", "yarn", "longrope"]
    factor: float = Field(gt=0.0)
    original_max_positions: int | None = Field(None, ge=1)
    low_freq_factor: float = 1.0  # llama3
    high_freq_factor: float = 4.0  # llama3
    beta_fast: float = 32.0  # yarn
    beta_slow: float = 1.0  # yarn
    attention_factor: float | None = None  # yarn: cos/sin scale; None = 0.1 ln(factor) + 1
    truncate: bool = True  # yarn: round the correction range to whole dimensions
    short_factor: list[float] | None = None  # longrope: per-frequency factors up to original_max_positions
    long_factor: list[float] | None = None  # longrope: past it

    @model_validator(mode="after")
    def _check(self) -> RopeScaling:
        if self.type == "llama3" and self.high_freq_factor <= self.low_freq_factor:
            raise ValueError(f"llama3 needs high_freq_factor > low_freq_factor, got {self.high_freq_factor} <= "
                             f"{self.low_freq_factor}")
        if (self.type == "longrope") != (self.short_factor is not None and self.long_factor is not None):
            raise ValueError("short_factor and long_factor are longrope's, and longrope needs both")
        return self

    def rotary_options(self, max_positions: int) -> dict[str, Any]:
        """Keyword arguments of ``RotaryEmbedding`` (plain values; the config stops here)."""
        options = self.model_dump(exclude={"type"})
        options["original_max_positions"] = self.original_max_positions or max_positions
        return {"scaling": self.type, **options}


class StackConfig(_Strict):
    """One stack (encoder or decoder) of layers of one type, with per-layer overrides.

    ``layer_attention`` overrides the self-attention of chosen layers (0-based index -> attention),
    e.g. ``{0: {name: full}}`` keeps layer 0 exact while ``attention`` windows the rest
    (``hybridformer longify --layers``, or ``--set model.decoder.layer_attention.0.name=full``).
    ``layer_rope_scaling`` gives chosen layers their own RoPE scaling (instead of the model's
    ``rope_scaling``): the full-attention layers of a local/global pattern read distances past the
    trained length, the windowed ones never do (``hybridformer longify --global-every``; Gemma 3 also
    gives its global layers other rotations than its local ones).
    ``layer_types`` overrides the layer type of chosen layers, e.g. ``layer: shortconv`` with
    ``layer_types: {2: transformer, 5: transformer}`` is an LFM2-style conv–attention hybrid.
    """

    layers: int = Field(3, ge=0)
    layer: str = "transformer"
    layer_types: dict[int, str] = {}
    attention: AttentionConfig = AttentionConfig()
    layer_attention: dict[int, AttentionConfig] = {}
    layer_rope_scaling: dict[int, RopeScaling] = {}
    conv: ConvConfig = ConvConfig()
    ssm: SSMConfig = SSMConfig()

    @model_validator(mode="after")
    def _check(self) -> StackConfig:
        for key, name in [("layer", self.layer)] + [(f"layer_types.{i}", t) for i, t in self.layer_types.items()]:
            if name not in LAYERS:
                raise ValueError(f"{key}: unknown layer {name!r}; allowed: {', '.join(sorted(LAYERS))}")
        if self.layers < 0:
            raise ValueError(f"layers must be >= 0, got {self.layers}")
        for key in ("layer_attention", "layer_rope_scaling", "layer_types"):
            outside = sorted(i for i in getattr(self, key) if not 0 <= i < self.layers)
            if outside:
                raise ValueError(f"{key}: layer index {outside[0]} does not exist; this stack has layers "
                                 f"0..{self.layers - 1}")
        return self

    def attention_of(self, index: int) -> AttentionConfig:
        """The self-attention of layer ``index``: its override, else the stack's."""
        return self.layer_attention.get(index, self.attention)

    def attentions(self) -> dict[str, AttentionConfig]:
        """Every self-attention setting of the stack by its key (``attention``, ``layer_attention.3``)."""
        return {"attention": self.attention} | {f"layer_attention.{i}": a for i, a in self.layer_attention.items()}

    def layer_of(self, index: int) -> str:
        """The layer type of layer ``index``: its override, else the stack's."""
        return self.layer_types.get(index, self.layer)

    def layer_kinds(self) -> set[str]:
        """Every layer type this stack builds."""
        return {self.layer_of(i) for i in range(self.layers)}


Position = Literal["none", "sinusoidal", "learned", "rope", "alibi", "t5"]


class ModelConfig(_Strict):
    """The whole architecture; ``build_model(cfg)`` turns it into a module."""

    arch: Literal["encoder_decoder", "decoder_lm", "encoder_classifier"] = "encoder_decoder"
    vocab_size: int = Field(8000, ge=1)
    d_model: int = Field(256, ge=1)
    heads: int = Field(4, ge=1)
    kv_heads: int | None = Field(None, ge=1)  # None = heads (MHA); 1 = MQA; in between = GQA
    ffn_dim: int = Field(1024, ge=1)
    activation: Literal["relu", "gelu", "gelu_tanh", "silu", "swiglu", "geglu", "geglu_tanh"] = "relu"
    norm: Literal["layernorm", "rmsnorm", "offset_rmsnorm"] = "layernorm"  # offset_rmsnorm: x·(1 + w) (Gemma)
    norm_placement: Literal["pre", "post", "sandwich"] = "pre"  # sandwich: pre-norm plus a norm on each branch
    qk_norm: bool = False  # the model's norm on each head's queries and keys, before RoPE (LFM2, Qwen3, Gemma 3)
    residual: Literal["standard", "deepnet", "rezero"] = "standard"
    dropout: float = Field(0.1, ge=0.0, lt=1.0)
    position: Position = "sinusoidal"
    max_positions: int = Field(1024, ge=1)  # learned positions (and rope_scaling's default original length)
    position_offset: int = Field(0, ge=0)  # learned positions: rows before position 0 (BART 2, RoBERTa pad_id+1)
    rope_base: float = Field(10000.0, gt=1.0)  # rotation frequencies base**(-2i/d) must fall with i
    rope_scaling: RopeScaling | None = None  # rope only: linear | dynamic | ntk | llama3 | yarn
    head_dim: int | None = Field(None, ge=1)  # attention head width; None = d_model // heads
    norm_eps: float = Field(1e-5, gt=0.0)
    attention_bias: bool = True  # biases of the attention projections (q, k, v, out)
    qkv_bias: bool | None = None  # biases of q, k, v (Qwen2: True, attention_bias False); None = attention_bias
    ffn_bias: bool = True  # biases of the feed-forward linears
    t5_buckets: int = Field(32, ge=4)  # half per direction, half of those exact: at least one exact bucket
    t5_max_distance: int = Field(128, ge=2)
    embed_scale: bool = True  # multiply embeddings by sqrt(d_model)
    embed_multiplier: float = 1.0  # and by this (Granite's embedding_multiplier)
    residual_multiplier: float = 1.0  # every residual branch scaled by it before the add (Granite)
    tie_embeddings: bool = True  # decoder input embedding = output projection
    share_embeddings: bool = True  # encoder and decoder share one embedding (shared vocabulary)
    num_classes: int = Field(2, ge=0)  # encoder_classifier only; 0 = no head (a sentence encoder)
    pad_id: int = Field(0, ge=0)  # == vocab_size: padding outside the vocabulary (GPT-2: no free token)
    bos_id: int = Field(1, ge=0)
    eos_id: int = Field(2, ge=0)
    extra_eos_ids: list[int] = []  # more ids that end generation (a chat model's end-of-turn, e.g. <|im_end|>)
    # options of pretrained encoder-decoders and encoders (docs/interop.md); defaults = the toolkit's own models
    decoder_start_id: int | None = Field(None, ge=0)  # first decoder token of a seq2seq model; None = bos_id
    score_scale: float | None = None  # attention score scale; None = 1/sqrt(head_dim) (T5: 1)
    sinusoid_layout: Literal["interleaved", "halves"] = "interleaved"  # halves: [sin | cos] (Marian)
    positions_skip_padding: bool = False  # learned positions count only non-padding tokens (RoBERTa)
    type_vocab_size: int = Field(0, ge=0)  # token type embeddings; type 0 is added (BERT, RoBERTa)
    layernorm_embedding: bool = False  # a norm over the summed embeddings (BART, mBART, BERT)
    final_logits_bias: bool = False  # a bias on the vocabulary projection (BART, Marian)
    output_scale: float = 1.0  # decoder states × it before the projection (tied T5: d_model**-0.5; Granite)
    encoder: StackConfig = StackConfig()
    decoder: StackConfig = StackConfig()
    cross_attention: AttentionConfig = AttentionConfig()
    # compression (docs/compression.md), replayed by build_model on the freshly built float model:
    pruned_heads: dict[str, list[int]] | None = None  # attention module path -> kept query heads (original ids)
    quantization: Literal["dynamic_int8", "int8_weight", "int4", "bf16"] | None = None  # linears' weight format (CPU)

    @model_validator(mode="after")
    def _check(self) -> ModelConfig:
        kv = self.kv_heads or self.heads
        if self.head_dim is None and self.d_model % self.heads:
            raise ValueError(f"d_model={self.d_model} must be divisible by heads={self.heads} (or set head_dim)")
        if self.heads % kv:
            raise ValueError(f"heads={self.heads} must be divisible by kv_heads={kv}")
        if self.attention_head_dim % 2 and self.position == "rope":
            raise ValueError(f"rope needs an even head dimension, got {self.attention_head_dim}")
        if self.rope_scaling is not None and self.position != "rope":
            raise ValueError(f"rope_scaling applies to position='rope', not {self.position!r}")
        factors = self.rope_scaling and self.rope_scaling.short_factor
        if factors and not len(factors) == len(self.rope_scaling.long_factor) == self.attention_head_dim // 2:
            raise ValueError(f"rope_scaling.short_factor/long_factor need head_dim / 2 = "
                             f"{self.attention_head_dim // 2} factors each")
        own_base = [f"{role}.{where}" for role in ("encoder", "decoder")
                    for where, attention in getattr(self, role).attentions().items() if attention.rope_base]
        if own_base and self.position != "rope":
            raise ValueError(f"{own_base[0]}.rope_base applies to position='rope', not {self.position!r}")
        if (self.encoder.layer_rope_scaling or self.decoder.layer_rope_scaling) and self.position != "rope":
            raise ValueError(f"layer_rope_scaling applies to position='rope', not {self.position!r}")
        if self.head_dim is not None and "lsra" in self.encoder.layer_kinds() | self.decoder.layer_kinds():
            raise ValueError("head_dim cannot be set with layer='lsra' (its attention branch derives its own)")
        if self.qk_norm and "lsra" in (self.encoder.layer, self.decoder.layer):
            raise ValueError("qk_norm cannot be set with layer='lsra' (its attention branch derives its own heads)")
        if self.residual == "deepnet" and self.norm_placement != "post":
            raise ValueError("residual='deepnet' scales a post-norm skip path; set norm_placement='post'")
        if self.t5_max_distance <= self.t5_buckets // 2:
            raise ValueError(f"t5_max_distance={self.t5_max_distance} must exceed half of t5_buckets={self.t5_buckets}"
                             " (the log-spaced buckets start there)")
        for name, value in [("bos_id", self.bos_id), ("eos_id", self.eos_id)] + [
                (f"extra_eos_ids.{i}", v) for i, v in enumerate(self.extra_eos_ids)]:
            if not 0 <= value < self.vocab_size:
                raise ValueError(f"{name}={value} must be below vocab_size={self.vocab_size}")
        if self.pad_id > self.vocab_size:  # == vocab_size: padding outside the vocabulary (no row, no logit)
            raise ValueError(f"pad_id={self.pad_id} must be below vocab_size={self.vocab_size}, or equal to it "
                             "for padding outside the vocabulary")
        if self.output_scale != 1.0 and self.arch == "encoder_classifier":
            raise ValueError("output_scale scales a decoder's output (T5, Granite); leave it at 1.0 for "
                             f"arch={self.arch!r}")
        return self

    @model_validator(mode="after")
    def _check_conv_layers(self) -> ModelConfig:
        for role in ("encoder", "decoder"):
            check_conv_stack(self, role)
        return self

    @property
    def eos_ids(self) -> list[int]:
        """Every id that ends generation: ``eos_id`` first."""
        return [self.eos_id, *(i for i in self.extra_eos_ids if i != self.eos_id)]

    @property
    def num_kv_heads(self) -> int:
        return self.kv_heads or self.heads

    @property
    def attention_head_dim(self) -> int:
        return self.head_dim or self.d_model // self.heads

    @property
    def is_seq2seq(self) -> bool:
        return self.arch == "encoder_decoder"

    @property
    def start_id(self) -> int:
        """The token a seq2seq decoder starts from (BART: eos, T5 and Marian: pad)."""
        return self.bos_id if self.decoder_start_id is None else self.decoder_start_id


def check_conv_stack(cfg: ModelConfig, role: str) -> None:
    """Widths the conv-hybrid and SSM layer types need, checked against the model (errors name the key)."""
    stack: StackConfig = getattr(cfg, role)
    conv, key, kinds = stack.conv, f"{role}.conv", stack.layer_kinds()
    for layer in sorted(kinds & {"lightconv", "dynamicconv"}):
        if cfg.d_model % conv.heads:
            raise ValueError(f"{key}.heads={conv.heads} must divide d_model={cfg.d_model} for layer {layer!r}")
    if kinds & {"branchformer", "ebranchformer"} and (conv.cgmlp_dim or cfg.ffn_dim) % 2:
        raise ValueError(f"{key}.cgmlp_dim (default ffn_dim) must be even: the cgMLP gates one half by the other")
    if kinds & {"mamba2", "parallel_mamba2"}:
        ssm = stack.ssm
        inner = ssm.inner or ssm.expand * cfg.d_model
        if inner % ssm.head_dim or (inner // ssm.head_dim) % ssm.groups:
            raise ValueError(f"{role}.ssm.head_dim={ssm.head_dim} must divide the inner width (ssm.inner, else "
                             f"expand·d_model) {inner} into heads that {role}.ssm.groups={ssm.groups} divides")
    if "lsra" in kinds:
        attn = round(cfg.d_model * conv.lsra_split)
        if attn < 1 or attn >= cfg.d_model or attn % cfg.heads:
            raise ValueError(f"{key}.lsra_split={conv.lsra_split} gives {attn} attention channels of "
                             f"d_model={cfg.d_model}; they must be a positive multiple of heads={cfg.heads}, less "
                             "than d_model")
        if cfg.position == "rope" and (attn // cfg.heads) % 2:
            raise ValueError(f"{key}.lsra_split={conv.lsra_split}: rope needs an even attention head "
                             f"({attn} channels / {cfg.heads} heads)")
        if (cfg.d_model - attn) % conv.heads:
            raise ValueError(f"{key}.heads={conv.heads} must divide the {cfg.d_model - attn} convolution channels "
                             f"of lsra (d_model={cfg.d_model}, lsra_split={conv.lsra_split})")


# ----------------------------------------------------------------------------- loading

M = TypeVar("M", bound=BaseModel)


def parse_config(cls: type[M], data: dict[str, Any], *, prefix: str = "") -> M:
    """Validate ``data`` as ``cls``, turning pydantic's report into one readable ConfigError."""
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_describe(cls, exc, prefix)) from None


def _describe(cls: type[BaseModel], exc: ValidationError, prefix: str) -> str:
    lines = []
    for err in exc.errors():
        loc = [str(p)[:40] for p in err["loc"]]
        path = ".".join(([prefix] if prefix else []) + loc) or "config"
        if err["type"] == "extra_forbidden":
            allowed = _fields_at(cls, err["loc"][:-1])
            lines.append(f"{path}: unknown key; allowed keys: {', '.join(allowed)}")
        else:
            msg = err["msg"].removeprefix("Value error, ")
            shown = "input" in err and not isinstance(err["input"], dict)
            lines.append(f"{path}: {msg} (got {brief(err['input'])})" if shown else f"{path}: {msg}")
    shown_lines = lines[:5] + ([f"... and {len(lines) - 5} more"] if len(lines) > 5 else [])
    return "; ".join(shown_lines)


def _fields_at(cls: type[BaseModel], loc: tuple) -> list[str]:
    for part in loc:
        field = cls.model_fields.get(str(part))
        annotation = getattr(field, "annotation", None)
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        cls = annotation
    return sorted(cls.model_fields)


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``a.b.c=value`` overrides (values parsed as YAML) to a nested dict, in place."""
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r} must look like key.path=value")
        node = data
        parts = key.strip().split(".")
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"override {item!r}: {part!r} is a value, not a section")
            node = child
        node[parts[-1]] = structured.parse(raw, where=f"--set {key.strip()}", yaml_syntax=True, error=ConfigError)
    return data


def read_config_file(path: str | Path) -> dict[str, Any]:
    """Read a YAML (or JSON) mapping; a missing or malformed file is a ConfigError."""
    path = Path(path)
    data = structured.read(path, yaml_syntax=path.suffix != ".json", error=ConfigError)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys, got {type(data).__name__}")
    return data


def load_config(path: str | Path | None, overrides: list[str] = (), cls: type[M] = ModelConfig) -> M:
    """Load ``cls`` from a YAML file (or defaults when ``path`` is None) plus overrides."""
    data = read_config_file(path) if path is not None else {}
    return parse_config(cls, apply_overrides(data, list(overrides)))


# ----------------------------------------------------------------------------- training (data, train, experiment)


BPE_MIN_VOCAB = 261  # a learned BPE vocabulary holds 4 special + 256 byte tokens (data.tokenizer.RESERVED) + merges


class DataConfig(_Strict):
    """Where training text comes from and how it becomes batches.

    Seq2seq reads either plain parallel files (``train_src``/``train_tgt``, ``.gz`` allowed), a JSONL
    file with named fields (``train_file`` + ``src_field``/``tgt_field``), or a built-in generated
    task (``builtin``). A decoder LM reads ``train_file`` as one text (JSONL: ``tgt_field``; with
    ``chat``, each record rendered as a conversation) split into blocks; without ``valid_file`` the last
    ``valid_fraction`` of it is held out. Relative paths are relative to the working directory.
    """

    format: Literal["text", "jsonl", "folders"] = "text"  # folders: labeled documents, see below
    train_src: str | None = None
    train_tgt: str | None = None
    valid_src: str | None = None
    valid_tgt: str | None = None
    train_file: str | None = None
    valid_file: str | None = None
    src_field: str = "source"
    tgt_field: str = "target"
    # LM from JSONL pairs: each record is one conversation (user: src_field, assistant: tgt_field) rendered by
    # the chat template beside data.tokenizer (a converted instruct model's), as `generate --chat` prompts it
    chat: bool = False
    # LM from JSONL prompt/completion records (src_field = prompt, tgt_field = completion; EOS follows it)
    completion: bool = False
    answer_only: bool = True  # chat / completion: the loss falls on the answers only (false: on the whole text)
    valid_fraction: float = Field(0.1, gt=0.0, lt=1.0)
    builtin: str | None = None  # name of a generated task from hybridformer.data.tasks
    builtin_train: int = 5000
    builtin_valid: int = 300
    tokenizer: str | None = None  # tokenizer.json to use; None = learn one from the training text
    tokenizer_kind: Literal["bpe", "char", "byte"] = "bpe"
    vocab_size: int = Field(8000, ge=BPE_MIN_VOCAB)  # when learning a BPE tokenizer (tokenizer_kind=bpe)
    max_src_len: int = Field(256, ge=2)  # longer pairs are dropped (and counted)
    max_tgt_len: int = Field(256, ge=2)
    block_size: int = Field(256, ge=1)  # LM: tokens per training block
    max_tokens: int = Field(4096, ge=1)  # padded tokens per batch (per process, per micro-step)
    limit_train: int | None = Field(None, ge=1)  # use only the first N training examples (quick runs)
    # classification (model.arch=encoder_classifier): labeled documents, truncated to max_src_len tokens.
    # format=jsonl: train_file/valid_file with text_field/label_field; format=folders: train_file is a
    # directory or tar archive of <split>/<label>/*.txt, valid from valid_split (valid_file, default
    # train_file). Without a validation source a seeded valid_fraction of the training documents is held out.
    text_field: str = "text"
    label_field: str = "label"
    train_split: str = "train"
    valid_split: str | None = None
    labels: list[str] | None = None  # keep only these labels (e.g. skip aclImdb's train/unsup)
    limit_valid: int | None = Field(None, ge=1)  # classification: validate on a seeded subset of N documents

    @model_validator(mode="after")
    def _check(self) -> DataConfig:
        if (self.train_src is None) != (self.train_tgt is None) or (self.valid_src is None) != (self.valid_tgt is None):
            raise ValueError("parallel files come in pairs: set both train_src and train_tgt (and valid_src/valid_tgt)")
        return self


Probability = Annotated[float, Field(ge=0.0, lt=1.0)]
LORA_TARGETS = ("q", "k", "v", "o", "gate", "up", "down")  # the projections a LoRA adapter may attach to


class LoraConfig(_Strict):
    """LoRA (Hu et al., 2021): the base stays frozen and each targeted projection learns
    ``W + (alpha / rank) · B A`` with ``A: (rank, in)``, ``B: (out, rank)``, B starting at zero."""

    rank: int = Field(16, ge=1)
    alpha: float = Field(32.0, gt=0.0)
    dropout: float = Field(0.0, ge=0.0, lt=1.0)  # on the adapter's input
    targets: list[Literal["q", "k", "v", "o", "gate", "up", "down"]] = list(LORA_TARGETS)
    bias: Literal["none"] = "none"  # biases stay frozen (PEFT's bias="none")

    @model_validator(mode="after")
    def _check(self) -> LoraConfig:
        if not self.targets or len(set(self.targets)) != len(self.targets):
            raise ValueError(f"train.lora.targets: name each projection once, from {', '.join(LORA_TARGETS)} "
                             f"(got {self.targets})")
        return self


class TrainConfig(_Strict):
    """The optimization loop: AdamW, schedule, loss, precision, evaluation, checkpoints, stopping."""

    seed: int = Field(1, ge=0, lt=2**32)
    max_steps: int = Field(1000, ge=1)
    lr: float = Field(5e-4, gt=0.0)
    min_lr: float = Field(0.0, ge=0.0)
    schedule: Literal["inverse_sqrt", "cosine", "linear", "constant", "wsd"] = "inverse_sqrt"
    warmup_steps: int = Field(100, ge=0)
    # Final cool-down to min_lr over this share of max_steps: wsd (default 0.2) and inverse_sqrt (default none)
    decay_fraction: float | None = Field(None, gt=0.0, le=1.0)
    decay_shape: Literal["linear", "cosine", "1-sqrt"] = "linear"
    weight_decay: float = Field(0.01, ge=0.0)
    betas: tuple[Probability, Probability] = (0.9, 0.98)
    adam_eps: float = Field(1e-8, gt=0.0)
    label_smoothing: float = Field(0.1, ge=0.0, lt=1.0)
    clip_norm: float = Field(1.0, ge=0.0)  # 0 = no clipping
    accumulate: int = Field(1, ge=1)  # micro-batches per optimizer step
    precision: Literal["fp32", "bf16", "auto"] = "fp32"  # bf16 = autocast; auto = probe at start-up, keep faster
    activation_checkpointing: bool = False
    ema_decay: float | None = Field(None, gt=0.0, lt=1.0)  # e.g. 0.999: EMA of the weights
    eval_every: int = Field(200, ge=1)
    eval_bleu: int = Field(0, ge=0)  # seq2seq: greedy-decode this many validation pairs and log BLEU (0 = off)
    save_every: int | None = Field(None, ge=1)  # None = eval_every
    keep_last: int = Field(3, ge=1)
    patience: int | None = Field(None, ge=1)  # early stopping: evaluations without improvement
    log_every: int = Field(10, ge=1)
    device: str = Field("auto", pattern=r"^(auto|cpu|mps|cuda(:\d+)?)$")  # auto | cpu | cuda | cuda:N | mps
    strategy: Literal["ddp", "fsdp"] = "ddp"  # under torchrun with more than one process
    init_from: str | None = None  # checkpoint whose weights start the run (fine-tuning); unused on resume
    lora: LoraConfig | None = None  # train LoRA adapters on the frozen init_from model instead of all weights
    base_precision: Literal["fp32", "bf16"] = "fp32"  # LoRA: how the frozen base weights are held

    @model_validator(mode="after")
    def _check(self) -> TrainConfig:
        if self.lora is not None and self.init_from is None:
            raise ValueError("train.lora adapts a pretrained model: set train.init_from to its checkpoint")
        if self.base_precision == "bf16" and (self.lora is None or self.precision != "bf16"):
            raise ValueError("train.base_precision=bf16 holds a frozen LoRA base in bf16 and computes in bf16: it "
                             "needs train.lora and train.precision=bf16")
        if self.min_lr > self.lr:
            raise ValueError(f"train.min_lr={self.min_lr} must not exceed train.lr={self.lr}")
        if self.decay_fraction is not None and self.schedule not in ("wsd", "inverse_sqrt"):
            raise ValueError(f"train.decay_fraction applies to schedule wsd or inverse_sqrt, not {self.schedule!r} "
                             "(cosine and linear already decay over the whole run)")
        return self


class ExperimentConfig(_Strict):
    """A training recipe: ``model``, ``data`` and ``train`` sections (``configs/*.yaml``)."""

    model: ModelConfig = ModelConfig()
    data: DataConfig = DataConfig()
    train: TrainConfig = TrainConfig()

    @model_validator(mode="before")
    @classmethod
    def _fine_tune_defaults(cls, data: Any) -> Any:
        """Fine-tuning (``train.init_from``) starts from the checkpoint's model and tokenizer: its config.json
        is the model section (keys given in ``model`` override it, e.g. ``dropout``) and its tokenizer.json
        the default ``data.tokenizer``, so a recipe names only what changes."""
        train = data.get("train") if isinstance(data, dict) else None
        init_from = train.get("init_from") if isinstance(train, dict) else None
        if not isinstance(init_from, str) or not isinstance(data.get("model", {}), dict):
            return data
        file = Path(init_from) / "config.json"
        if not file.is_file():
            raise ValueError(f"train.init_from: {init_from} is not a checkpoint directory (no config.json)")
        saved = structured.read(file, mapping=True, error=ConfigError)
        if saved.get("quantization"):  # gradients cannot flow into packed int8/int4 buffers
            raise ValueError(f"train.init_from: {init_from} holds {saved['quantization']} weights for inference; "
                             "fine-tune the float checkpoint it was quantized from, then quantize the result")
        data = {**data, "model": {**saved, **data.get("model", {})}}
        section, tokenizer = data.get("data", {}), Path(init_from) / "tokenizer.json"
        if isinstance(section, dict) and "tokenizer" not in section and tokenizer.is_file():
            data["data"] = {**section, "tokenizer": str(tokenizer)}
        return data

    @model_validator(mode="after")
    def _check(self) -> ExperimentConfig:
        classifier, labeled = self.model.arch == "encoder_classifier", self.data.format in ("jsonl", "folders")
        if classifier and (not labeled or self.data.builtin is not None):
            raise ValueError("data.format: an encoder_classifier trains on labeled documents; set data.format to "
                             "'jsonl' (text_field/label_field) or 'folders' (<split>/<label>/*.txt)")
        if classifier and self.train.eval_bleu:
            raise ValueError("train.eval_bleu decodes text; an encoder_classifier logs validation accuracy instead")
        if self.data.chat and (self.model.arch != "decoder_lm" or self.data.format != "jsonl"):
            raise ValueError("data.chat renders JSONL records as conversations for a language model: it needs "
                             f"model.arch='decoder_lm' and data.format='jsonl' (got {self.model.arch!r}, "
                             f"{self.data.format!r})")
        if self.data.completion and (self.data.chat or self.model.arch != "decoder_lm" or self.data.format != "jsonl"):
            raise ValueError("data.completion reads JSONL prompt/completion records for a language model: it needs "
                             "model.arch='decoder_lm', data.format='jsonl' and not data.chat (a chat model's "
                             "records go through its template with data.chat)")
        if not classifier and self.data.format == "folders":
            raise ValueError("data.format='folders' holds labeled documents for model.arch='encoder_classifier'")
        return self
