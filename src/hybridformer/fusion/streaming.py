"""The one streaming loop behind averaging and merging: read N safetensors files tensor by tensor.

Inputs are memory-mapped with ``safe_open`` and read one tensor name at a time, so peak memory
is the merged model (the output) plus one tensor per input — never N models. The output is a
core checkpoint directory (weights, ``config.json`` and ``tokenizer.json`` of the first input,
``meta.json`` recording how it was made), written atomically.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import Tensor

from ..checkpoint import CONFIG, META, TOKENIZER, WEIGHTS, load_config_file, load_tokenizer, write_checkpoint_dir
from ..errors import CheckpointError
from .checks import TensorSpecs, check_same_architecture, check_same_tensors, check_same_vocabulary

# name, the models' tensors, the base's tensor (or None) -> merged tensor; all float64
TensorFusion = Callable[[str, list[Tensor], Tensor | None], Tensor]


def fuse_checkpoints(
    paths: Sequence[str | Path], out: str | Path, fuse: TensorFusion, *,
    base: str | Path | None = None, meta: dict[str, Any] | None = None,
) -> Path:
    """Check that ``paths`` (and ``base``) are one architecture and vocabulary, then write
    ``fuse(name, tensors, base_tensor)`` for every tensor name into the checkpoint ``out``.

    Floating tensors are fused in float64 and stored in their original dtype; integer tensors
    must be equal in every input and are copied.
    """
    inputs = [Path(p) for p in paths] + ([Path(base)] if base is not None else [])
    if not paths:
        raise CheckpointError("no checkpoints to fuse")
    configs = [load_config_file(p) for p in inputs]
    with ExitStack() as stack:
        files = [_open_weights(stack, p) for p in inputs]
        check_same_tensors(inputs, [_specs(f) for f in files])
        check_same_architecture(inputs, configs)
        check_same_vocabulary(inputs, configs, [load_tokenizer(p) for p in inputs])
        merged: dict[str, Tensor] = {}
        for name in files[0].keys():
            tensors = [f.get_tensor(name) for f in files]
            merged[name] = _fuse_one(name, tensors, fuse, has_base=base is not None, sources=inputs)
    first = inputs[0]

    def fill(tmp: Path) -> None:
        save_file(merged, str(tmp / WEIGHTS), metadata={"format": "pt"})
        shutil.copyfile(first / CONFIG, tmp / CONFIG)
        if (first / TOKENIZER).exists():
            shutil.copyfile(first / TOKENIZER, tmp / TOKENIZER)
        record = {"inputs": [str(p) for p in paths], "base": None if base is None else str(base), **(meta or {})}
        (tmp / META).write_text(json.dumps({"fusion": record}, indent=2))

    return write_checkpoint_dir(out, fill)


def _fuse_one(name: str, tensors: list[Tensor], fuse: TensorFusion, *, has_base: bool, sources: list[Path]) -> Tensor:
    dtype = tensors[0].dtype
    if not dtype.is_floating_point:
        for path, tensor in zip(sources[1:], tensors[1:], strict=True):
            if not torch.equal(tensor, tensors[0]):
                raise CheckpointError(f"{sources[0]} and {path}: integer tensor {name} differs; it cannot be merged")
        return tensors[0].clone()
    wide = [t.to(torch.float64) for t in tensors]
    models, base = (wide[:-1], wide[-1]) if has_base else (wide, None)
    return fuse(name, models, base).to(dtype).contiguous()


def _open_weights(stack: ExitStack, path: Path) -> Any:
    weights = path / WEIGHTS
    if not weights.is_file():
        raise CheckpointError(f"{path}: missing {WEIGHTS}")
    try:
        return stack.enter_context(safe_open(str(weights), framework="pt"))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{weights}: corrupt or truncated safetensors file ({exc})") from None


def _specs(handle: Any) -> TensorSpecs:
    specs: TensorSpecs = {}
    for name in handle.keys():
        piece = handle.get_slice(name)
        specs[name] = (piece.get_dtype(), tuple(piece.get_shape()))
    return specs
