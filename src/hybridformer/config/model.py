"""The whole architecture (:class:`ModelConfig`) and the facts derived from it that every command shares:
where padding lives, how many positions the model reads, how many new tokens a row may have.

Config stops at the builders: modules receive plain arguments, never a config object.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from ..errors import DataError
from ..names import ACTIVATIONS
from .base import M, Strict, apply_overrides, parse_config, read_config_file
from .stack import AttentionConfig, RopeScaling, StackConfig

INPUT_LIMIT = 16384  # tokens, for position schemes without a table (sinusoidal, RoPE, ALiBi, T5, none)
Position = Literal["none", "sinusoidal", "learned", "rope", "alibi", "t5"]


class ModelConfig(Strict):
    """The whole architecture; ``build_model(cfg)`` turns it into a module."""

    arch: Literal["encoder_decoder", "decoder_lm", "encoder_classifier"] = "encoder_decoder"
    vocab_size: int = Field(8000, ge=1)
    d_model: int = Field(256, ge=1)
    heads: int = Field(4, ge=1)
    kv_heads: int | None = Field(None, ge=1)  # None = heads (MHA); 1 = MQA; in between = GQA
    ffn_dim: int = Field(1024, ge=1)
    activation: Literal[ACTIVATIONS] = "relu"
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
        if self.pad_id > self.vocab_size:  # == vocab_size: padding outside the vocabulary (pad_in_vocab)
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

    @property
    def pad_in_vocab(self) -> bool:
        """Whether padding is a token: ``pad_id == vocab_size`` (GPT-2 has no free token) is padding outside
        the vocabulary, with no embedding row, no logit and no token text."""
        return self.pad_id < self.vocab_size

    def position_capacity(self) -> int:
        """The longest sequence the model reads: its learned position table, or ``max(max_positions,
        INPUT_LIMIT)`` for the position schemes that extrapolate."""
        return self.max_positions if self.position == "learned" else max(self.max_positions, INPUT_LIMIT)

    def output_cap(self, *, prefix_len: int, src_len: int, table: int | None = None) -> int:
        """The most new tokens a row may have after ``prefix_len`` fed tokens: ``max_positions`` (so
        ``--max-len-b 100000000`` cannot decode for ever) and what a position table has left (learned
        positions', or the ``table`` rows an export wrote); an input of ``src_len`` tokens the table cannot
        hold is a DataError."""
        rows = self.max_positions if self.position == "learned" else table
        if rows is None:
            return self.max_positions
        if src_len > rows or rows - prefix_len < 1:
            raise DataError(f"an input of {src_len} tokens does not fit the {rows} positions of this model; "
                            "shorten the line")
        return min(self.max_positions, rows - prefix_len)


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


def load_config(path: str | Path | None, overrides: list[str] = (), cls: type[M] = ModelConfig) -> M:
    """Load ``cls`` from a YAML file (or defaults when ``path`` is None) plus overrides."""
    data = read_config_file(path) if path is not None else {}
    return parse_config(cls, apply_overrides(data, list(overrides)))
