"""LoRA adapters in the PEFT format: ``adapter_config.json`` + ``adapter_model.safetensors``.

The config is ``peft.LoraConfig``'s own file (written and read by ``peft``), so ``transformers``,
``peft``, vLLM and merging tools read what we write, and we read what ``peft`` writes. An adapter
turns into per-weight updates ``ΔW = scale · B A`` (``scale = alpha / rank``, or ``alpha / √rank``
with rsLoRA), placed into the rows of our fused projections by the :mod:`~hybridformer.lora.layout`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor

from .. import structured
from ..config import LoraConfig, ModelConfig
from ..errors import CheckpointError, ConfigError
from ..filenames import ADAPTER_CONFIG, ADAPTER_WEIGHTS, CONFIG, WEIGHTS
from .layout import PEFT_PREFIX, Layout, Part, by_file_name


def peft_module(name: str = "peft"):  # noqa: ANN201 - a module
    """``peft`` (or one of its modules), or a ConfigError saying how to install it. peft imports torchao, whose
    import-time warnings (CUDA libraries, torch's pytree deprecations) are silenced as for our own imports."""
    import importlib

    from ..quantized import quiet_torchao

    try:
        with quiet_torchao():
            return importlib.import_module(name)
    except ImportError:
        raise ConfigError("LoRA adapters need the peft library: pip install 'hybridformer[lora]'") from None


def is_adapter(path: str | Path) -> bool:
    return (Path(path) / ADAPTER_CONFIG).is_file()


@dataclass
class Adapter:
    """A read adapter: per file module, its factors ``A: (r, in)``, ``B: (out, r)`` and scale."""

    path: Path
    factors: dict[str, tuple[Tensor, Tensor, float]]


def read_adapter(path: str | Path) -> Adapter:
    """Read a PEFT LoRA adapter directory; what we cannot apply exactly is a CheckpointError naming it."""
    PeftLoraConfig, get_pattern_key = peft_module().LoraConfig, peft_module("peft.utils.other").get_pattern_key
    path = Path(path)
    if not is_adapter(path):
        raise CheckpointError(f"{path}: not a LoRA adapter (no {ADAPTER_CONFIG})")
    try:
        config = PeftLoraConfig.from_pretrained(str(path))
    except (ValueError, TypeError, KeyError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path / ADAPTER_CONFIG}: not a PEFT LoRA config ({str(exc)[:200]})") from None
    unsupported = {"use_dora": config.use_dora, "modules_to_save": config.modules_to_save,
                   "bias": config.bias if config.bias != "none" else None, "lora_bias": config.lora_bias,
                   "fan_in_fan_out": config.fan_in_fan_out, "layer_replication": config.layer_replication,
                   "trainable_token_indices": config.trainable_token_indices}
    used = [f"{key}={value!r}" for key, value in unsupported.items() if value]
    if str(config.peft_type).rsplit(".", 1)[-1] != "LORA" or used:
        raise CheckpointError(f"{path}: only plain LoRA adapters can be applied (found {', '.join(used) or 'a '}"
                              f"{'' if used else str(config.peft_type)}); merge it with peft first")
    try:
        tensors = load_file(str(path / ADAPTER_WEIGHTS))
    except FileNotFoundError:
        raise CheckpointError(f"{path}: missing {ADAPTER_WEIGHTS}") from None
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"{path / ADAPTER_WEIGHTS}: corrupt or truncated ({str(exc)[:200]})") from None
    pairs: dict[str, dict[str, Tensor]] = {}
    for key, tensor in tensors.items():
        module, _, kind = key.removeprefix(PEFT_PREFIX).rpartition(".lora_")
        if kind not in ("A.weight", "B.weight"):
            raise CheckpointError(f"{path / ADAPTER_WEIGHTS}: unexpected tensor {key} (only lora_A/lora_B weights "
                                  "of linear layers can be applied)")
        pairs.setdefault(module, {})[kind[0]] = tensor.float()
    factors = {}
    for module, pair in pairs.items():
        if set(pair) != {"A", "B"} or pair["B"].shape[1] != pair["A"].shape[0]:
            raise CheckpointError(f"{path / ADAPTER_WEIGHTS}: {module} needs lora_A (r, in) and lora_B (out, r)")
        rank = config.rank_pattern.get(get_pattern_key(config.rank_pattern, module), config.r)
        alpha = config.alpha_pattern.get(get_pattern_key(config.alpha_pattern, module), config.lora_alpha)
        scale = alpha / rank**0.5 if config.use_rslora else alpha / rank
        factors[module] = (pair["A"], pair["B"], float(scale))
    return Adapter(path, factors)


def weight_deltas(adapter: Adapter, layout: Layout, shapes: dict[str, torch.Size]) -> dict[str, Tensor]:
    """Our weight name -> its full update ``ΔW`` (rows of parts the adapter leaves alone are zero)."""
    parts = by_file_name(layout)
    unknown = sorted(set(adapter.factors) - set(parts))
    if unknown:
        raise CheckpointError(f"{adapter.path}: adapts {unknown[0]}, which this model does not have "
                              f"({len(unknown)} unknown module(s)); is the adapter made for another base model?")
    deltas: dict[str, Tensor] = {}
    for name, (a, b, scale) in adapter.factors.items():
        module, part = parts[name]
        weight = f"{module}.weight"
        rows, cols = part.stop - part.start, shapes[weight][1]
        if b.shape[0] != rows or a.shape[1] != cols:
            raise CheckpointError(f"{adapter.path}: {name} is ({b.shape[0]}, {a.shape[1]}) but this model's is "
                                  f"({rows}, {cols})")
        delta = deltas.setdefault(weight, torch.zeros(shapes[weight]))
        delta[part.start: part.stop] += scale * (b @ a)
    return deltas


def write_adapter(tmp: Path, tensors: dict[str, Tensor], lora: LoraConfig, parts: list[Part], cfg: ModelConfig,
                  base: str) -> None:
    """``adapter_config.json`` (by ``peft``) and ``adapter_model.safetensors`` into the directory ``tmp``."""
    config = peft_module().LoraConfig(r=lora.rank, lora_alpha=lora.alpha, lora_dropout=lora.dropout, bias=lora.bias,
                            target_modules=sorted({part.name.rsplit(".", 1)[-1] for part in parts}),
                            base_model_name_or_path=base,
                            task_type="CAUSAL_LM" if cfg.arch == "decoder_lm" else "SEQ_2_SEQ_LM")
    config.save_pretrained(str(tmp))
    save_file(tensors, str(tmp / ADAPTER_WEIGHTS), metadata={"format": "pt"})


def adapter_base(path: str | Path, base: str | Path | None = None) -> Path:
    """The base checkpoint of an adapter: ``base`` if given, else its ``base_model_name_or_path``."""
    if base is not None:
        return Path(base)
    named = read_base_name(path)
    if named is None:
        raise ConfigError(f"{path}: the adapter names no base model (base_model_name_or_path); pass the base "
                          "checkpoint, e.g. `hybridformer generate BASE --adapter ADAPTER`")
    if not (Path(named) / CONFIG).is_file() or (Path(named) / WEIGHTS).is_file() and _is_hf(named):
        raise ConfigError(f"{path}: its base {named!r} is not a hybridformer checkpoint here (a peft adapter names "
                          "the Hugging Face model); convert the base (hybridformer convert) and pass it, e.g. "
                          "`hybridformer generate BASE --adapter ADAPTER` or --base BASE")
    return Path(named)


def _is_hf(folder: str) -> bool:
    """A transformers folder (``model_type`` in config.json) rather than our checkpoint."""
    try:
        return "model_type" in structured.read(Path(folder) / CONFIG, mapping=True, error=CheckpointError)
    except CheckpointError:
        return False


def read_base_name(path: str | Path) -> str | None:
    data = structured.read(Path(path) / ADAPTER_CONFIG, error=CheckpointError)
    name = data.get("base_model_name_or_path") if isinstance(data, dict) else None
    return name if isinstance(name, str) and name else None

