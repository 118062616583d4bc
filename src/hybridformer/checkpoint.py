"""Checkpoint directories: ``model.safetensors`` + ``config.json`` (+ ``tokenizer.json``), written atomically.

Loading never unpickles anything: weights are safetensors, the config is JSON validated by
pydantic, the tokenizer is HF tokenizers' JSON. Every failure is a :class:`CheckpointError`
naming the path and what is wrong.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_model
from tokenizers import Tokenizer
from torch import nn

from .config import ModelConfig, parse_config
from .devices import check_device
from .errors import CheckpointError, ConfigError
from .models import build_model

WEIGHTS, CONFIG, TOKENIZER, META = "model.safetensors", "config.json", "tokenizer.json", "meta.json"


@dataclass
class Checkpoint:
    model: nn.Module
    config: ModelConfig
    tokenizer: Tokenizer | None
    path: Path
    meta: dict[str, Any] = field(default_factory=dict)


def save_checkpoint(
    path: str | Path, model: nn.Module, config: ModelConfig, tokenizer: Tokenizer | None = None, *,
    meta: dict[str, Any] | None = None, write_extra: Callable[[Path], None] | None = None,
) -> Path:
    """Write a checkpoint directory atomically: build it in a temp dir, then rename it into place.

    ``write_extra(tmp_dir)`` lets the trainer add its own files (optimizer state) to the same
    atomic write. A crash at any moment leaves either the old directory or the new one.
    """

    def fill(tmp: Path) -> None:
        save_model(model, str(tmp / WEIGHTS), metadata={"format": "pt"})
        (tmp / CONFIG).write_text(json.dumps(config.model_dump(), indent=2))
        if tokenizer is not None:
            (tmp / TOKENIZER).write_text(tokenizer.to_str())
        if meta:
            (tmp / META).write_text(json.dumps(meta, indent=2))
        if write_extra is not None:
            write_extra(tmp)

    return write_checkpoint_dir(path, fill)


def _fsync_tree(directory: Path) -> None:
    for file in directory.iterdir():
        with open(file, "rb") as handle:
            os.fsync(handle.fileno())
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _replace_dir(new: Path, dest: Path) -> None:
    old = dest.parent / f".{dest.name}.old-{uuid.uuid4().hex[:8]}"
    if dest.exists():
        os.replace(dest, old)
    os.replace(new, dest)
    shutil.rmtree(old, ignore_errors=True)


def load_config_file(path: str | Path) -> ModelConfig:
    """The validated ModelConfig of a checkpoint directory."""
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"{path}: no such checkpoint directory")
    config_file = path / CONFIG
    try:
        data = json.loads(config_file.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{path}: missing {CONFIG}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{config_file}: corrupt JSON ({exc})") from None
    try:
        return parse_config(ModelConfig, data)
    except ConfigError as exc:
        raise CheckpointError(f"{config_file}: invalid model config: {exc}") from None


def load_weights(path: str | Path, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """The raw tensors of ``path/model.safetensors`` (a missing or corrupt file is a CheckpointError)."""
    weights = Path(path) / WEIGHTS
    if not weights.is_file():
        raise CheckpointError(f"{Path(path)}: missing {WEIGHTS}")
    try:
        return load_file(str(weights), device=str(device))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{weights}: corrupt or truncated safetensors file ({exc})") from None


def load_state_into(model: nn.Module, tensors: dict[str, torch.Tensor], source: Path) -> None:
    """Load ``tensors`` into ``model``, checking names and shapes; tied parameters may appear once."""
    expected = model.state_dict()
    groups: dict[int, list[str]] = {}
    for name, tensor in expected.items():
        groups.setdefault(tensor.data_ptr() if tensor.numel() else id(tensor), []).append(name)
    missing = [names[0] for names in groups.values() if not any(n in tensors for n in names)]
    unexpected = sorted(set(tensors) - set(expected))
    mismatched = [f"{n}: file {tuple(t.shape)} vs model {tuple(expected[n].shape)}"
                  for n, t in tensors.items() if n in expected and t.shape != expected[n].shape]
    problems = ([f"missing {n}" for n in missing[:5]] + [f"unexpected {n}" for n in unexpected[:5]]
                + mismatched[:5])
    if problems:
        raise CheckpointError(f"{source}: weights do not fit the config: {'; '.join(problems)}")
    full = {}
    for names in groups.values():
        present = next(n for n in names if n in tensors)
        full.update({n: tensors[present] for n in names})
    model.load_state_dict(full, strict=True)


def load_tokenizer(path: str | Path) -> Tokenizer | None:
    file = Path(path) / TOKENIZER
    if not file.exists():
        return None
    try:
        return Tokenizer.from_str(file.read_text())
    except Exception as exc:  # tokenizers raises plain Exception subclasses
        raise CheckpointError(f"{file}: corrupt tokenizer ({exc})") from None


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> Checkpoint:
    """Rebuild the model from ``config.json`` and load its safetensors weights (nothing is unpickled)."""
    path, device = Path(path), check_device(device)
    config = load_config_file(path)
    model = build_model(config)
    load_state_into(model, load_weights(path, device), path / WEIGHTS)
    meta_file = path / META
    meta = json.loads(meta_file.read_text()) if meta_file.exists() else {}
    return Checkpoint(model.to(device).eval(), config, load_tokenizer(path), path, meta)


def write_checkpoint_dir(path: str | Path, fill: Callable[[Path], None]) -> Path:
    """Atomically create the directory ``path`` from ``fill(tmp_dir)``: :func:`save_checkpoint` and the
    writers that have no ``nn.Module`` (averaging and merging stream raw tensors) share it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        fill(tmp)
        _fsync_tree(tmp)
        _replace_dir(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path
