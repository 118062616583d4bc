"""Exponential moving average of the weights (Polyak & Juditsky, 1992), kept in float32 beside training,
and `export_ema`, which copies a run's EMA weights out as an ordinary checkpoint."""

from __future__ import annotations

import shutil
from pathlib import Path

import torch
from torch import Tensor, nn

from ..checkpoint import load_checkpoint, save_checkpoint, write_checkpoint_dir
from ..errors import CheckpointError
from ..lora import is_adapter_only
from .distributed import copy_full_into
from .state import RunDir


class EMA:
    """``shadow = decay * shadow + (1 - decay) * param`` after every optimizer step.

    The first steps use ``min(decay, (1 + n) / (10 + n))`` so early noise fades fast (as in
    TensorFlow's ExponentialMovingAverage with num_updates). Only trained parameters are averaged (a LoRA
    run's adapters, not its frozen base).
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay, self.updates = decay, 0
        self.shadow = {name: p.detach().float().clone() for name, p in model.named_parameters() if p.requires_grad}

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for name, param in model.named_parameters():
            if name in self.shadow:
                self.shadow[name].lerp_(param.detach().float(), 1.0 - decay)

    def state_dict(self) -> dict[str, Tensor | int]:
        return {"updates": self.updates, **{f"shadow.{k}": v for k, v in self.shadow.items()}}

    def load_state_dict(self, state: dict[str, Tensor | int]) -> None:
        self.updates = int(state["updates"])
        for name in self.shadow:
            copy_full_into(self.shadow[name], state[f"shadow.{name}"])


def export_ema(run_dir: str | Path, out: str | Path) -> Path:
    """Copy a run's EMA weights out as an ordinary checkpoint directory (for generate/evaluate/average)."""
    source = RunDir(run_dir).ema
    if not source.is_dir():
        raise CheckpointError(f"{run_dir}: no EMA weights ({source} is missing); train with train.ema_decay "
                              "(e.g. --set train.ema_decay=0.999) to keep them")
    if is_adapter_only(source):  # a LoRA run: the EMA of its adapters, an adapter directory like the others
        return write_checkpoint_dir(out, lambda tmp: [shutil.copyfile(f, tmp / f.name) for f in source.iterdir()])
    ckpt = load_checkpoint(source)
    return save_checkpoint(out, ckpt.model, ckpt.config, ckpt.side_files, meta=ckpt.meta)
