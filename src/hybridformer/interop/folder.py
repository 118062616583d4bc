"""A Hugging Face model folder as a lazy tensor source: config.json, weights, tokenizer files.

Weights are read tensor by tensor from ``model.safetensors`` (or shards listed in
``model.safetensors.index.json``); a pickle ``pytorch_model.bin`` is read only with
``torch.load(weights_only=True)``, which refuses arbitrary objects.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from torch import Tensor

from .. import structured
from ..errors import CheckpointError
from ..filenames import CONFIG, WEIGHTS, WEIGHTS_INDEX


class HFFolder:
    """``config`` (config.json), ``keys()`` and ``get(name)`` (float32) over the folder's weights."""

    def __init__(self, path: Path) -> None:
        self.path = path
        if not (path / CONFIG).is_file():
            raise CheckpointError(f"{path}: not a Hugging Face model folder (no config.json) nor a .gguf file")
        self.config = structured.read(path / CONFIG, mapping=True, error=CheckpointError)
        self._where: dict[str, Path] = {}  # tensor -> file
        self._open: dict[Path, Any] = {}
        self._pickled: dict[str, Tensor] | None = None
        self._index_weights()

    def _index_weights(self) -> None:
        single, index = self.path / WEIGHTS, self.path / WEIGHTS_INDEX
        if single.is_file():
            self._where = dict.fromkeys(self._safetensors(single).keys(), single)
        elif index.is_file():
            weight_map = structured.read(index, mapping=True, error=CheckpointError).get("weight_map")
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
        """Tensor ``name`` as float32; an integer tensor (token ids, a quantized layout) is not a weight."""
        if self._pickled is not None:
            tensor, where = self._pickled[name], self.path / "pytorch_model.bin"
        else:
            where = self._where[name]
            try:
                tensor = self._safetensors(where).get_tensor(name)
            except (SafetensorError, OSError) as exc:
                raise CheckpointError(f"{where}: cannot read tensor {name} ({exc})") from None
        require_float(tensor.is_floating_point(), str(tensor.dtype).removeprefix("torch."), name, where)
        return tensor.float()

    def meta(self, name: str) -> Tensor:
        """Tensor ``name`` as :meth:`get` would give it, on the ``meta`` device: its shape and dtype come from the
        file's header, so nothing is read or allocated."""
        if self._pickled is not None:
            tensor = self._pickled[name]
            require_float(tensor.is_floating_point(), str(tensor.dtype).removeprefix("torch."), name,
                          self.path / "pytorch_model.bin")
            return torch.empty(tensor.shape, device="meta")
        where = self._where[name]
        try:
            header = self._safetensors(where).get_slice(name)
            shape, dtype = header.get_shape(), header.get_dtype()
        except (SafetensorError, OSError) as exc:
            raise CheckpointError(f"{where}: cannot read tensor {name} ({exc})") from None
        require_float(dtype.startswith(("F", "BF")), dtype, name, where)
        return torch.empty(shape, device="meta")


def require_float(floating: bool, dtype: str, name: str, where: Path) -> None:
    """A weight is floating point: an integer tensor (token ids, a quantized layout) would convert to garbage."""
    if not floating:
        dtype = re.sub(r"^(u?)i?(\d+)$", r"\1int\2", dtype.lower())  # safetensors' and GGUF's I64, U8 -> int64, uint8
        raise CheckpointError(f"{where}: tensor {name} is stored as {dtype}; weights must be floating point "
                              "(a quantized or foreign layout)")
