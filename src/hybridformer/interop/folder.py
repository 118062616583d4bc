"""A Hugging Face model folder as a lazy tensor source: config.json, weights, tokenizer files.

Weights are read tensor by tensor from ``model.safetensors`` (or shards listed in
``model.safetensors.index.json``); a pickle ``pytorch_model.bin`` is read only with
``torch.load(weights_only=True)``, which refuses arbitrary objects.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from torch import Tensor

from ..errors import CheckpointError


def read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{path}: missing") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path}: corrupt JSON ({exc})") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: expected a JSON object")
    return data


class HFFolder:
    """``config`` (config.json), ``keys()`` and ``get(name)`` (float32) over the folder's weights."""

    def __init__(self, path: Path) -> None:
        self.path = path
        if not (path / "config.json").is_file():
            raise CheckpointError(f"{path}: not a Hugging Face model folder (no config.json) nor a .gguf file")
        self.config = read_json(path / "config.json")
        self._where: dict[str, Path] = {}  # tensor -> file
        self._open: dict[Path, Any] = {}
        self._pickled: dict[str, Tensor] | None = None
        self._index_weights()

    def _index_weights(self) -> None:
        single, index = self.path / "model.safetensors", self.path / "model.safetensors.index.json"
        if single.is_file():
            self._where = dict.fromkeys(self._safetensors(single).keys(), single)
        elif index.is_file():
            weight_map = read_json(index).get("weight_map")
            if not isinstance(weight_map, dict):
                raise CheckpointError(f"{index}: no weight_map")
            self._where = {name: self.path / file for name, file in weight_map.items()}
        elif (self.path / "pytorch_model.bin").is_file():
            self._pickled = self._load_pickle(self.path / "pytorch_model.bin")
        else:
            raise CheckpointError(f"{self.path}: no weights (model.safetensors, its index, or pytorch_model.bin)")

    def _safetensors(self, file: Path) -> Any:
        if file not in self._open:
            if not file.is_file():
                raise CheckpointError(f"{file}: missing weight shard")
            try:
                self._open[file] = safe_open(str(file), framework="pt")
            except (SafetensorError, OSError) as exc:
                raise CheckpointError(f"{file}: corrupt or truncated safetensors file ({exc})") from None
        return self._open[file]

    @staticmethod
    def _load_pickle(file: Path) -> dict[str, Tensor]:
        try:
            state = torch.load(file, map_location="cpu", weights_only=True, mmap=True)
        except Exception as exc:  # weights_only refuses anything but tensors and plain containers
            raise CheckpointError(f"{file}: cannot read as a weights-only PyTorch file ({exc})") from None
        if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
            raise CheckpointError(f"{file}: expected a dict of tensors")
        return state

    def keys(self) -> set[str]:
        return set(self._pickled) if self._pickled is not None else set(self._where)

    def get(self, name: str) -> Tensor:
        if self._pickled is not None:
            return self._pickled[name].float()
        try:
            return self._safetensors(self._where[name]).get_tensor(name).float()
        except (SafetensorError, OSError) as exc:
            raise CheckpointError(f"{self._where[name]}: cannot read tensor {name} ({exc})") from None
