"""The run directory: step checkpoints with trainer state, best and EMA exports, metrics logs.

Layout of ``RUN_DIR``::

    config.yaml            the resolved experiment config
    tokenizer.json
    metrics.jsonl          one JSON object per log/eval event
    tb/                    TensorBoard events
    checkpoints/step-000200/   model.safetensors config.json tokenizer.json meta.json trainer_state.pt
    checkpoints/best/      the weights with the lowest validation loss
    checkpoints/ema/       the EMA weights (when train.ema_decay is set)

A step checkpoint is written in one atomic rename (``save_checkpoint(write_extra=...)``), so after a
SIGKILL the newest ``step-*`` directory is always complete. ``trainer_state.pt`` holds only
tensors and plain numbers and is read with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch

from ..errors import CheckpointError

TRAINER_STATE = "trainer_state.pt"
PREFIX = "step-"


class RunDir:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.checkpoints = self.root / "checkpoints"
        self.metrics = self.root / "metrics.jsonl"
        self.tokenizer = self.root / "tokenizer.json"
        self.config = self.root / "config.yaml"
        self.tensorboard = self.root / "tb"
        self.best = self.checkpoints / "best"
        self.ema = self.checkpoints / "ema"

    def step_dir(self, step: int) -> Path:
        return self.checkpoints / f"{PREFIX}{step:06d}"

    def step_checkpoints(self) -> list[Path]:
        """Complete step checkpoints, oldest first."""
        if not self.checkpoints.is_dir():
            return []
        found = [p for p in self.checkpoints.iterdir()
                 if p.is_dir() and p.name.startswith(PREFIX) and (p / TRAINER_STATE).exists()]
        return sorted(found, key=lambda p: int(p.name[len(PREFIX):]))

    def latest(self) -> Path | None:
        found = self.step_checkpoints()
        return found[-1] if found else None

    def prune(self, keep_last: int) -> None:
        """Delete all but the newest ``keep_last`` step checkpoints (best and ema are separate)."""
        for old in self.step_checkpoints()[:-keep_last]:
            shutil.rmtree(old, ignore_errors=True)

    def truncate_metrics(self, step: int) -> None:
        """On resume: forget events logged after the checkpoint, so the curve continues seamlessly."""
        if not self.metrics.exists():
            return
        kept = [line for line in self.metrics.read_text().splitlines()
                if line.strip() and json.loads(line).get("step", 0) <= step]
        self.metrics.write_text("".join(line + "\n" for line in kept))


def write_trainer_state(directory: Path, state: dict[str, Any]) -> None:
    torch.save(state, directory / TRAINER_STATE)


def read_trainer_state(checkpoint: Path) -> dict[str, Any]:
    """Optimizer/EMA tensors and counters; never unpickles arbitrary objects."""
    file = checkpoint / TRAINER_STATE
    try:
        return torch.load(file, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{checkpoint}: missing {TRAINER_STATE}; it is not a resumable checkpoint") from None
    except Exception as exc:  # torch.load raises many types on corrupt input
        raise CheckpointError(f"{file}: corrupt trainer state ({exc})") from None


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """All events of a ``metrics.jsonl`` (for tests, plots and reports)."""
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
