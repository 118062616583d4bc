"""What the per-architecture mappings share: the mapping record, field checks and RoPE settings."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from typing import Any

from torch import Tensor

from ...config import ModelConfig
from ...errors import ConfigError
from ..rules import Rule


@dataclass(frozen=True)
class GGUFLayout:
    """How llama.cpp writes an architecture: its ``general.architecture`` name and what its converter changed.

    ``tensors`` adds per-layer GGUF names (``attn_q_norm`` ...) to the Llama ones in ``interop/gguf`` (the
    export takes them first, then the ``gguf`` package's tensor map; the round-trip tests hold the two equal);
    ``layers`` is the HF prefix of the layers; ``fused`` names the HF tensors llama.cpp stores split in equal row
    blocks (Granite's ``shared_mlp.input_linear`` -> ``ffn_gate``, ``ffn_up``);
    ``config`` reads the metadata only this architecture has into config.json fields; ``weight(name, w)``
    undoes what llama.cpp's converter did to a tensor (HF names; Gemma's norms are stored as 1 + w) and
    ``stored(name, w)`` does it (``export --to gguf``); ``metadata(writer, cfg)`` writes the architecture's own
    keys, raising ConfigError for what its llama.cpp architecture cannot hold. ``local_attention``: it has
    sliding-window layers (Gemma 3).
    """

    name: str
    permuted_qk: bool = False  # q/k rows permuted for llama.cpp's RoPE (its Llama converter does this)
    tensors: dict[str, str] = dataclass_field(default_factory=dict)
    layers: str = "model.layers"
    fused: dict[str, tuple[str, ...]] = dataclass_field(default_factory=dict)
    config: Callable[[Callable[[str], Any], set[str]], dict[str, Any]] | None = None  # (metadata, tensor names)
    weight: Callable[[str, Tensor], Tensor] | None = None
    stored: Callable[[str, Tensor, ModelConfig], Tensor] | None = None
    metadata: Callable[[Any, ModelConfig], None] | None = None
    local_attention: bool = False


@dataclass(frozen=True)
class Architecture:
    """One Hugging Face ``model_type``: everything the toolkit knows about it, in one object.

    ``model_config(hf)`` turns config.json into ModelConfig data (raising ConfigError naming any
    field that changes the computation and is not supported); ``rules(cfg)`` lists our tensors
    and their sources (conversion runs them forwards, ``export --to hf`` backwards);
    ``hf_config(cfg)`` is config.json for the export. ``export_blockers(cfg)`` says what the HF class
    cannot hold; None = the round trip of ``hf/roundtrip.py`` decides. A checkpoint that does not
    name its source type (trained here, or fine-tuned) exports as the first type, in registry order,
    that ``adopts`` it (a round-trip fit) or, failing that, that ``claims`` it (the Llama family).
    ``ct2``: whether ``export --to ct2`` is offered for it; ``gguf``: how llama.cpp's files of it read.
    ``fold(hf)`` gives ``weight(name, tensor)``, rewriting each source tensor as it is read (Falcon-H1's µP
    multipliers folded into the weights they scale).
    """

    model_type: str
    hf_class: str  # the transformers class the export names in config.json ``architectures``
    model_config: Callable[[dict[str, Any]], dict[str, Any]]
    rules: Callable[[ModelConfig], list[Rule]]
    hf_config: Callable[[ModelConfig], dict[str, Any]]
    unused: tuple[str, ...] = ()  # source tensor names/prefixes that may be present and are not converted
    head: str | None = None  # a separate output projection's name: untied exactly when the source holds it (T5)
    prefix: str = ""  # the rules' names start with it; a bare base model saved without it is read with it (GPT-2)
    export_blockers: Callable[[ModelConfig], list[str]] | None = None
    adopts: bool = False
    claims: Callable[[ModelConfig], bool] | None = None
    ct2: bool = True
    gguf: GGUFLayout | None = None
    fold: Callable[[dict[str, Any]], Callable[[str, Tensor], Tensor]] | None = None


def unsupported(field: str, value: Any, why: str) -> ConfigError:
    return ConfigError(f"config.json: {field}={value!r} is not supported ({why})")


def require(hf: dict[str, Any], field: str, allowed: tuple, default: Any, why: str) -> None:
    """Refuse a field whose value changes the computation in a way the toolkit does not implement."""
    value = hf.get(field, default)
    if value not in allowed:
        raise unsupported(field, value, why)


def first_id(value: Any) -> int | None:
    """config.json ids may be a list (several EOS tokens): the first one."""
    if isinstance(value, list):
        return value[0] if value else None
    return value


RopeFields = dict[str, Any]
_ROPE_KNOBS = {  # HF rope_parameters key -> RopeScaling field, per type
    "linear": {},
    "dynamic": {},
    "llama3": {"low_freq_factor": "low_freq_factor", "high_freq_factor": "high_freq_factor",
               "original_max_position_embeddings": "original_max_positions"},
    "yarn": {"beta_fast": "beta_fast", "beta_slow": "beta_slow", "attention_factor": "attention_factor",
             "original_max_position_embeddings": "original_max_positions", "truncate": "truncate"},
    "longrope": {"short_factor": "short_factor", "long_factor": "long_factor", "attention_factor": "attention_factor",
                 "original_max_position_embeddings": "original_max_positions"},
}


def rope_settings(hf: dict[str, Any]) -> RopeFields:
    """``rope_base`` and ``rope_scaling`` from config.json (``rope_parameters`` in transformers 5,
    ``rope_scaling`` + ``rope_theta`` before), with HF's defaults filled in exactly."""
    params = dict(hf.get("rope_parameters") or hf.get("rope_scaling") or {})
    base = params.get("rope_theta", hf.get("rope_theta", 10000.0))
    kind = params.get("rope_type", params.get("type", "default"))
    legacy = hf.get("rope_scaling")
    if isinstance(legacy, dict) and legacy.get("rope_type", legacy.get("type", kind)) != kind:
        raise unsupported("rope_scaling.rope_type", legacy.get("rope_type", legacy.get("type")),
                          f"beside rope_parameters.rope_type={kind!r}, transformers reads it; remove one of the two")
    partial = params.get("partial_rotary_factor", hf.get("partial_rotary_factor", 1.0))
    if partial not in (None, 1, 1.0):
        raise unsupported("partial_rotary_factor", partial, "RoPE on part of each head is not implemented")
    if kind == "default":
        return {"rope_base": float(base)}
    if kind not in _ROPE_KNOBS:
        raise unsupported("rope_scaling.rope_type", kind, f"supported: default, {', '.join(_ROPE_KNOBS)}")
    scaling: dict[str, Any] = {"type": kind, "factor": params.get("factor")}
    for key, field in _ROPE_KNOBS[kind].items():
        if params.get(key) is not None:
            scaling[field] = params[key]
    if kind == "yarn":
        scaling["beta_fast"] = params.get("beta_fast") or 32.0
        scaling["beta_slow"] = params.get("beta_slow") or 1.0
        if params.get("mscale") or params.get("mscale_all_dim"):
            raise unsupported("rope_scaling.mscale", params.get("mscale"), "DeepSeek's YaRN variant")
    original = hf.get("original_max_position_embeddings")
    if kind == "longrope" and scaling["factor"] is None and original:  # Phi-3: the ratio of the two lengths
        scaling["factor"] = hf.get("max_position_embeddings", original) / original
    if scaling["factor"] is None:
        raise unsupported("rope_scaling.factor", None, f"{kind} scaling needs a factor")
    # HF's dynamic scaling starts past max_position_embeddings; llama3/yarn default to it too.
    scaling.setdefault("original_max_positions", hf.get("original_max_position_embeddings")
                       or hf.get("max_position_embeddings"))
    return {"rope_base": float(base), "rope_scaling": scaling}


def hf_rope_parameters(cfg: ModelConfig) -> dict[str, Any]:
    """The inverse of :func:`rope_settings`: transformers 5's ``rope_parameters``."""
    params: dict[str, Any] = {"rope_theta": cfg.rope_base, "rope_type": "default"}
    scaling = cfg.rope_scaling
    if scaling is None:
        return params
    if scaling.type == "ntk":
        raise ConfigError("rope_scaling.type='ntk' (static NTK) has no Hugging Face equivalent; "
                          "use linear, dynamic, llama3 or yarn")
    params.update(rope_type=scaling.type, factor=scaling.factor)
    for key, field in _ROPE_KNOBS[scaling.type].items():
        value = getattr(scaling, field)
        params[key] = value if value is not None or field != "original_max_positions" else cfg.max_positions
    return params


def gated_ffn_rules(ours: str, ffn: str, cfg: ModelConfig, names: tuple[str, str, str] = ("gate_proj", "up_proj",
                    "down_proj")) -> list[Rule]:
    """A gated FFN's separate gate, up and down maps (``names``) as our fused ``linear1`` (gate; up) and ``linear2``,
    biases too where the model has them."""
    gate, up, down = names
    kinds = ["weight", "bias"] if cfg.ffn_bias else ["weight"]
    return [rule for kind in kinds for rule in (
        Rule(f"{ours}.1.body.linear1.{kind}", (f"{ffn}.{gate}.{kind}", f"{ffn}.{up}.{kind}"),
             (cfg.ffn_dim, cfg.ffn_dim)),
        Rule(f"{ours}.1.body.linear2.{kind}", (f"{ffn}.{down}.{kind}",)))]


def output_rules(cfg: ModelConfig, final_norm: str) -> list[Rule]:
    """The final norm and, unless tied to the embedding, the output head (``lm_head``)."""
    out = [Rule("decoder.final_norm.weight", (f"{final_norm}.weight",))]
    return out if cfg.tie_embeddings else [*out, Rule("output.weight", ("lm_head.weight",))]
