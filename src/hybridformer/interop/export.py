"""``export --to hf``: a checkpoint whose layers Hugging Face can represent -> a transformers model folder.

The tensor rules of the conversion run backwards (split fused q/k/v and gate/up projections), so a
Hugging Face -> hybridformer -> Hugging Face round trip gives identical tensors. A checkpoint with
hybrid layers (convolutions, sparse or linear attention, DeepNet/ReZero residuals, pruned heads,
int8 weights) has no Hugging Face equivalent and is refused with the list of what stands in the way.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from safetensors.torch import save_file

from ..checkpoint import (
    CONFIG,
    TOKENIZER,
    WEIGHTS,
    load_checkpoint,
    load_config_file,
    load_meta,
    load_weights,
    write_checkpoint_dir,
)
from ..config import ModelConfig
from ..errors import ConfigError
from ..outputs import prepare_output_dir
from .hf import ARCHITECTURES
from .hf.roundtrip import layout_blockers
from .tokenizer import TOKENIZER_CONFIG

EXPORTABLE = ("llama", "mistral", "qwen2")  # model types whose mapping can run backwards
# export back to their source type (or, for a model trained here, the first whose layout it fits)
CONVERTED_ONLY = ("bart", "mbart", "marian", "t5", "bert", "roberta", "gpt2", "lfm2", "granitemoehybrid")


def hf_blockers(cfg: ModelConfig) -> list[str]:
    """What in ``cfg`` Hugging Face's Llama/Mistral/Qwen2 cannot represent (empty: exportable)."""
    problems = []
    if cfg.arch != "decoder_lm":
        problems.append(f"arch={cfg.arch!r} (export supports decoder-only Llama-family models)")
    stack = cfg.decoder
    layer_types = {"decoder.layer": stack.layer} | {f"decoder.layer_types.{i}": t for i, t in stack.layer_types.items()}
    for where, kind in layer_types.items():
        if kind != "transformer":
            problems.append(f"{where}={kind!r} (convolution/SSM/hybrid layers)")
    attentions = {f"decoder.attention={stack.attention.name!r}": stack.attention} | {
        f"decoder.layer_attention.{i}={a.name!r}": a for i, a in stack.layer_attention.items()}
    for where, attention in attentions.items():
        windowed = attention.name == "sliding_window" and not attention.options.get("num_global")
        if attention.name != "full" and not windowed:
            problems.append(f"{where} (sparse, linear or low-rank attention)")
    if stack.layer_attention:
        problems.append("decoder.layer_attention (per-layer attention overrides)")
    if stack.layer_rope_scaling:
        problems.append("decoder.layer_rope_scaling (per-layer RoPE scaling)")
    checks = {
        "position": ("rope", "positions"), "norm": ("rmsnorm", "norm"), "norm_placement": ("pre", "norm placement"),
        "residual": ("standard", "DeepNet/ReZero residuals"), "activation": ("swiglu", "FFN activation"),
        "embed_scale": (False, "embedding scale"),
    }
    for name, (wanted, what) in checks.items():
        if getattr(cfg, name) != wanted:
            problems.append(f"{name}={getattr(cfg, name)!r} ({what})")
    if cfg.pruned_heads:
        problems.append("pruned_heads (heads pruned per layer)")
    if cfg.quantization:
        problems.append(f"quantization={cfg.quantization!r} (int8 weights)")
    if cfg.rope_scaling is not None and cfg.rope_scaling.type == "ntk":
        problems.append("rope_scaling.type='ntk' (static NTK has no Hugging Face equivalent)")
    if cfg.qkv_bias is not None and cfg.qkv_bias != cfg.attention_bias and (cfg.attention_bias or not cfg.qkv_bias):
        problems.append("qkv_bias/attention_bias combination")
    return problems


def model_type_of(cfg: ModelConfig, meta: dict[str, Any]) -> str:
    """The HF ``model_type`` to write: the source's when converted, else what the layout says."""
    if meta.get("model_type") in EXPORTABLE:
        return meta["model_type"]
    if cfg.qkv_bias and not cfg.attention_bias:
        return "qwen2"
    return "mistral" if cfg.decoder.attention.name == "sliding_window" else "llama"


def fixed_layout_type(cfg: ModelConfig, meta: dict[str, Any]) -> str | None:
    """The fixed-layout source type (BART ... GPT-2) a checkpoint exports to: the one it was converted from, or
    for a fine-tune of a converted model (whose meta.json the trainer wrote) the first whose layout it fits."""
    if meta.get("model_type") in CONVERTED_ONLY:
        return meta["model_type"]
    if meta.get("model_type") in EXPORTABLE or not hf_blockers(cfg):
        return None  # a Llama layout exports as Llama (Granite-H's layout also admits one without mamba2 layers)
    return next((name for name in CONVERTED_ONLY if _fits(cfg, name)), None)


def _fits(cfg: ModelConfig, model_type: str) -> bool:
    try:
        return not layout_blockers(cfg, ARCHITECTURES[model_type])
    except (KeyError, ValueError, ConfigError):  # a setting the type has no name for (an activation, a field)
        return False


def hf_state(source: Path, weights: dict[str, Any] | None = None) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """``(model_type, config.json dict, tensors)`` of ``source`` in Hugging Face naming and layout, or a
    ConfigError listing what Hugging Face cannot represent (what ``export --to hf`` and ``--to gguf`` write).
    ``weights`` replace the checkpoint's own (its model with a LoRA adapter folded in)."""
    cfg = load_config_file(source)
    meta = load_meta(source)
    fixed = fixed_layout_type(cfg, meta)
    problems = layout_blockers(cfg, ARCHITECTURES[fixed]) if fixed else hf_blockers(cfg)
    if problems:
        raise ConfigError(f"{source}: cannot export to Hugging Face: {'; '.join(problems)}")
    model_type = fixed or model_type_of(cfg, meta)
    if model_type == "qwen2" and not (cfg.qkv_bias and not cfg.attention_bias):
        raise ConfigError(f"{source}: a qwen2 model has q/k/v biases only (qkv_bias=True, attention_bias=False)")
    arch = ARCHITECTURES[model_type]
    if weights is not None:
        ours = dict(weights)
    else:
        ours = load_checkpoint(source).model.state_dict() if fixed else load_weights(source)  # tied names resolved
    if cfg.tie_embeddings and not fixed:
        ours.pop("output.weight", None)
    tensors = {}
    for rule in arch.rules(cfg):
        tensors.update(rule.split(ours[rule.ours]))
    config = {**arch.hf_config(cfg), "architectures": [arch.hf_class], "torch_dtype": "float32"}
    return model_type, config, tensors


def export_hf(checkpoint: str | Path, out: str | Path, *, overwrite: bool = False,
              weights: dict[str, Any] | None = None, write_extra: Callable[[Path], None] | None = None) -> Path:
    """Write ``checkpoint`` as a Hugging Face model folder (config.json, model.safetensors, tokenizer files).

    ``weights`` replace the checkpoint's own (see :func:`hf_state`); ``write_extra(tmp)`` adds files to the
    same atomic write (the adapter beside the base)."""
    source = Path(checkpoint)
    out = prepare_output_dir(out, overwrite=overwrite, inputs=[source])
    _, config, tensors = hf_state(source, weights)
    cfg = load_config_file(source)
    # transformers feeds pad back in after EOS: a pad outside the vocabulary (GPT-2) becomes EOS, its convention
    pad = cfg.pad_id if cfg.pad_id < cfg.vocab_size else cfg.eos_id
    generation = {"bos_token_id": cfg.bos_id, "eos_token_id": cfg.eos_id, "pad_token_id": pad}
    if cfg.is_seq2seq:
        generation["decoder_start_token_id"] = cfg.start_id

    def fill(tmp: Path) -> None:
        save_file(tensors, str(tmp / WEIGHTS), metadata={"format": "pt"})
        (tmp / CONFIG).write_text(json.dumps(config, indent=2))
        (tmp / "generation_config.json").write_text(json.dumps(generation, indent=2))
        for name in (TOKENIZER, TOKENIZER_CONFIG):
            if (source / name).is_file():
                shutil.copyfile(source / name, tmp / name)
        if write_extra is not None:
            write_extra(tmp)

    return write_checkpoint_dir(out, fill)
