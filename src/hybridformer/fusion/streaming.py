"""The one streaming loop behind averaging and merging: read N safetensors files tensor by tensor.

Inputs are memory-mapped with ``safe_open`` and read one tensor name at a time; each merged
tensor is written to the output file as soon as it is computed (the safetensors header is known
in advance: same names, shapes and dtypes as the inputs). Peak memory is therefore a few tensors,
not one model and never N models (mapped input pages are page cache the kernel can drop). The
output is a checkpoint directory (weights, the first input's config and side files, ``meta.json``
recording how it was made), written by the one checkpoint writer.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from torch import Tensor

from ..checkpoint import WEIGHTS, load_config_file, load_tokenizer, write_checkpoint
from ..data.side_files import SideFiles
from ..errors import CheckpointError
from ..inference import check_same_vocabulary
from ..tensorfile import DTYPES, TensorSpecs, write_safetensors
from .checks import check_same_architecture, check_same_tensors

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
        first, specs = inputs[0], _specs(files[0])  # the first input's config and side files travel on

        def weights(file: Path) -> None:
            write_safetensors(file, specs, lambda name: _fuse_one(name, files, fuse, has_base=base is not None,
                                                                   sources=inputs), files[0].metadata())

        record = {"inputs": [str(p) for p in paths], "base": None if base is None else str(base), **(meta or {})}
        return write_checkpoint(out, configs[0], SideFiles.read(first), weights=weights, meta={"fusion": record})


def _fuse_one(name: str, files: list[Any], fuse: TensorFusion, *, has_base: bool, sources: list[Path]) -> Tensor:
    if files[0].get_slice(name).get_dtype() not in _FLOATS:
        first = files[0].get_tensor(name)
        for path, handle in zip(sources[1:], files[1:], strict=True):
            if not torch.equal(handle.get_tensor(name), first):
                raise CheckpointError(f"{sources[0]} and {path}: integer tensor {name} differs; it cannot be merged")
        return first
    wide: list[Tensor] = []  # widened one input at a time: peak memory is N float64 copies of this tensor
    for handle in files:
        tensor = handle.get_tensor(name)
        dtype = tensor.dtype
        wide.append(tensor.to(torch.float64))
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


_FLOATS = {name for name, dtype in DTYPES.items() if dtype.is_floating_point}
