"""Where a run's starting weights come from: the step it resumes, ``train.init_from``, or a LoRA run's frozen
base with peft's adapter layers on it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from ..checkpoint import load_config_file, load_meta, load_state_into, load_weights
from ..config import ModelConfig, TrainConfig
from ..errors import ConfigError
from ..lora import LoraLayers, adapter_base, add_lora, hold_frozen, is_adapter_only, lora_layout, read_adapter
from .state import read_trainer_state


@dataclass
class LoraStart:
    """A LoRA run's adapter layers and the base checkpoint they adapt (named in every adapter written)."""

    layers: LoraLayers
    base: Path


def load_start(model: nn.Module, model_cfg: ModelConfig, t: TrainConfig, resume_from: Path | None,
               log: Callable[[str], None], *, fsdp: bool) -> tuple[LoraStart | None, dict | None]:
    """The run's starting weights into ``model`` (the resumed step's, ``init_from``'s, or fresh), and for a
    LoRA run its adapter layers; returns those and the resumed step's trainer state."""
    if t.lora is not None:
        if fsdp:
            raise ConfigError("train.lora trains a few adapters on a frozen base: use train.strategy=ddp")
        return start_lora(model, model_cfg, t, resume_from, log)
    state = restore_weights(model, model_cfg, resume_from, log) if resume_from else None
    if state is None and t.init_from:
        init_weights(model, model_cfg, Path(t.init_from), log)
    return None, state


def inherit_pruning(model_cfg: ModelConfig, init_from: str | None) -> ModelConfig:
    """Fine-tuning a head-pruned checkpoint (``train.init_from``) keeps its pruned architecture,
    so ``hybridformer prune ... && hybridformer train --set train.init_from=PRUNED`` just works."""
    if not init_from or model_cfg.pruned_heads is not None:
        return model_cfg
    pruned = load_config_file(Path(init_from)).pruned_heads
    return model_cfg.model_copy(update={"pruned_heads": pruned}) if pruned else model_cfg


def check_same_model(model_cfg: ModelConfig, checkpoint_dir: Path, what: str, *, ignore: tuple[str, ...] = ()) -> None:
    """Refuse a checkpoint whose architecture differs from ``model_cfg`` (but in the ``ignore`` keys)."""
    mine, theirs = model_cfg.model_dump(), load_config_file(checkpoint_dir).model_dump()
    keys = [k for k in mine if k not in ignore and mine[k] != theirs.get(k)]
    if keys:
        raise ConfigError(f"{what}: model config differs from {checkpoint_dir} in: {', '.join(keys)}")


def init_weights(model: nn.Module, model_cfg: ModelConfig, checkpoint_dir: Path, log: Callable[[str], None]) -> None:
    """``train.init_from``: start from a checkpoint of the same architecture (dropout may differ)."""
    check_same_model(model_cfg, checkpoint_dir, "train.init_from", ignore=("dropout",))
    load_state_into(model, load_weights(checkpoint_dir), checkpoint_dir)
    log(f"initialised the weights from {checkpoint_dir}")


def restore_weights(model: nn.Module, model_cfg: ModelConfig, checkpoint_dir: Path,
                    log: Callable[[str], None]) -> dict:
    """``--resume``: the step's weights, and its trainer state."""
    check_same_model(model_cfg, checkpoint_dir, "--resume")
    load_state_into(model, load_weights(checkpoint_dir), checkpoint_dir)
    log(f"resuming from {checkpoint_dir}")
    return read_trainer_state(checkpoint_dir)


def start_lora(model: nn.Module, model_cfg: ModelConfig, t: TrainConfig, resume_from: Path | None,
               log: Callable[[str], None]) -> tuple[LoraStart, dict | None]:
    """``train.lora``: the frozen base from ``init_from`` (a checkpoint, or an adapter's base), peft's LoRA
    layers on it, their factors from the resumed step or from an ``init_from`` adapter; and the resumed
    step's trainer state."""
    init = Path(t.init_from)
    base = (adapter_base(init) if is_adapter_only(init) else init).resolve()
    init_weights(model, model_cfg, base, log)
    layers = add_lora(model, lora_layout(model, model_cfg, load_meta(base)), t.lora)
    frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    if t.base_precision != "fp32":
        hold_frozen(model, t.base_precision)
    source = resume_from or (init if is_adapter_only(init) else None)
    if source is not None:
        if resume_from is not None:
            check_same_model(model_cfg, resume_from, "--resume")
        layers.load(model, read_adapter(source), t.lora)
        log(f"{'resuming' if resume_from else 'adapter initialised'} from {source}")
    trained = sum(p.numel() for p in layers.tensors(dict(model.named_parameters())).values())
    log(f"LoRA: {trained:,} adapter parameters on a frozen base of {frozen:,} "
        f"(rank {t.lora.rank}, {', '.join(t.lora.targets)}; base {t.base_precision})")
    return LoraStart(layers, base), (read_trainer_state(resume_from) if resume_from else None)
