"""One stack of layers (encoder or decoder) and the options of its mixers: attention, convolution, SSM, RoPE
scaling. Names are checked against ``names`` (no import of the registries); an attention kernel's own
options are checked by the kernel when the config loads."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from .. import names
from .base import Strict


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
        if self.name not in names.ATTENTION_NAMES:
            raise ValueError(f"unknown attention {self.name!r}; allowed: {', '.join(sorted(names.ATTENTION_NAMES))}")
        if self.options:  # a kernel's defaults are valid; only given options need the kernel (and torch)
            from ..attention import check_kernel_options

            self.__pydantic_extra__.update(check_kernel_options(self.name, self.options))
        return self


class ConvConfig(Strict):
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


class SSMConfig(Strict):
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


class RopeScaling(Strict):
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


class StackConfig(Strict):
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
            if name not in names.LAYER_NAMES:
                raise ValueError(f"{key}: unknown layer {name!r}; allowed: {', '.join(sorted(names.LAYER_NAMES))}")
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

