"""Writing a run's checkpoints: the live weights, a plain copy (FSDP-gathered, or the EMA's weights), or a LoRA
run's adapter instead of the weights. Only rank 0 writes; gathering is collective, so every rank calls."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..checkpoint import load_state_into, save_checkpoint
from ..config import LoraConfig, ModelConfig
from ..data.side_files import SideFiles
from ..lora import write_adapter
from ..models import build_model
from . import distributed as D
from .state import RunDir
from .weights import LoraStart


@dataclass
class RunWriter:
    """What every checkpoint of one run shares."""

    run_dir: RunDir
    env: D.DistEnv
    model_cfg: ModelConfig
    side: SideFiles  # the tokenizer and tokenizer_config.json (a converted model's chat template)
    meta: dict[str, Any]  # the objective's, beside the step and validation loss (e.g. a classifier's labels)
    fsdp: bool
    lora: LoraStart | None = None
    lora_cfg: LoraConfig | None = None

    def model(self, live: nn.Module, ema: dict[str, torch.Tensor] | None = None) -> nn.Module:
        """The model to write: the live one, or a plain CPU copy (FSDP: gathered; EMA: averaged weights)."""
        if (ema is None or self.lora is not None) and not self.fsdp:
            return D.unwrap(live)
        model = build_model(self.model_cfg)
        load_state_into(model, D.full_state_dict(live), self.run_dir.root)
        if ema is not None:
            with torch.no_grad():
                for name, param in model.named_parameters():
                    param.copy_(ema[name])
        return model

    def write(self, path: Path, live: nn.Module, ema: dict[str, torch.Tensor] | None, *, step: int,
              valid_loss: float, write_extra: Callable[[Path], None] | None = None) -> None:
        """Checkpoint ``path`` of the live model (or of the ``ema`` weights), plus what ``write_extra`` adds."""
        model = self.model(live, ema)  # collective under FSDP: every rank takes part

        def extra(tmp: Path) -> None:
            if self.lora is not None:
                self._write_adapter(live, ema, tmp)
            if write_extra is not None:
                write_extra(tmp)

        if self.env.is_main:
            save_checkpoint(path, model if self.lora is None else None, self.model_cfg, self.side,
                            meta={"step": step, "valid_loss": valid_loss, **self.meta}, write_extra=extra)

    def _write_adapter(self, live: nn.Module, ema: dict[str, torch.Tensor] | None, tmp: Path) -> None:
        """A LoRA run's checkpoint: the adapter (PEFT format, naming its base) instead of the weights."""
        params = ema if ema is not None else dict(D.unwrap(live).named_parameters())
        layers = self.lora.layers
        write_adapter(tmp, layers.tensors(params), self.lora_cfg, [p for ps in layers.parts.values() for p in ps],
                      self.model_cfg, str(self.lora.base))
