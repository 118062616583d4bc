"""The one streaming loop behind averaging and merging: read N safetensors files tensor by tensor.

Inputs are memory-mapped with ``safe_open`` and read one tensor name at a time; each merged
tensor is written to the output file as soon as it is computed (the safetensors header is known
in advance: same names, shapes and dtypes as the inputs). Peak memory is therefore a few tensors,
not one model and never N models (mapped input pages are page cache the kernel can drop). The
output is a core checkpoint directory (weights, ``config.json`` and ``tokenizer.json`` of the
first input, ``meta.json`` recording how it was made), written atomically.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any, BinaryIO

import torch
from safetensors import SafetensorError, safe_open
from torch import Tensor

from ..checkpoint import CONFIG, META, TOKENIZER, WEIGHTS, load_config_file, load_tokenizer, write_checkpoint_dir
from ..errors import CheckpointError
from ..inference import check_same_vocabulary
from .checks import TensorSpecs, check_same_architecture, check_same_tensors

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
        first, specs = inputs[0], _specs(files[0])

        def fill(tmp: Path) -> None:
            with open(tmp / WEIGHTS, "wb") as handle:
                writer = SafetensorsWriter(handle, specs, files[0].metadata() or {"format": "pt"})
                for name in specs:
                    writer.write(name, _fuse_one(name, files, fuse, has_base=base is not None, sources=inputs))
            shutil.copyfile(first / CONFIG, tmp / CONFIG)
            if (first / TOKENIZER).exists():
                shutil.copyfile(first / TOKENIZER, tmp / TOKENIZER)
            record = {"inputs": [str(p) for p in paths], "base": None if base is None else str(base), **(meta or {})}
            (tmp / META).write_text(json.dumps({"fusion": record}, indent=2))

        return write_checkpoint_dir(out, fill)


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


_FLOATS = {"F64", "F32", "F16", "BF16", "F8_E4M3", "F8_E5M2"}
_ITEMSIZE = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "F8_E4M3": 1, "F8_E5M2": 1,
             "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1}


class SafetensorsWriter:
    """Write a safetensors file tensor by tensor, in the order of ``specs`` (its header is written first).

    The format is an 8-byte little-endian header length, a JSON header mapping each name to its
    dtype, shape and byte range, then the raw little-endian data; ``safe_open``/``load_file``
    read the result like any other safetensors file.
    """

    def __init__(self, handle: BinaryIO, specs: TensorSpecs, metadata: dict[str, str]) -> None:
        header: dict[str, Any] = {"__metadata__": metadata}
        offset = 0
        for name, (dtype, shape) in specs.items():
            size = _ITEMSIZE[dtype] * _numel(shape)
            header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + size]}
            offset += size
        encoded = json.dumps(header, separators=(",", ":")).encode()
        encoded += b" " * (-len(encoded) % 8)  # the reference writer pads the header to 8 bytes
        handle.write(len(encoded).to_bytes(8, "little") + encoded)
        self.handle, self.header, self.names = handle, header, iter(specs)

    def write(self, name: str, tensor: Tensor) -> None:
        expected = next(self.names)
        start, end = self.header[name]["data_offsets"]
        data = tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8)
        if name != expected or data.numel() != end - start or list(tensor.shape) != self.header[name]["shape"]:
            raise CheckpointError(f"internal: tensor {name} {tuple(tensor.shape)} {tensor.dtype} written out of order "
                                  f"or with the wrong size (expected {expected})")
        self.handle.write(memoryview(data.numpy()))


def _numel(shape: tuple[int, ...]) -> int:
    count = 1
    for dim in shape:
        count *= dim
    return count
