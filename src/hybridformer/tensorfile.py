"""Write a safetensors file one tensor at a time, so converting or merging never holds a whole model.

The format is a little-endian u64 header size, a JSON header (dtype, shape, byte range of each tensor)
and the raw bytes (https://github.com/huggingface/safetensors). Shapes are known before any tensor is
computed (from the model built on the ``meta`` device, or the inputs' headers), so the header goes
first and each tensor is produced, written and freed in turn: peak memory is about one tensor.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor

from .errors import CheckpointError

DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
          "F8_E4M3": torch.float8_e4m3fn, "F8_E5M2": torch.float8_e5m2, "I64": torch.int64, "I32": torch.int32,
          "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8, "BOOL": torch.bool}
DTYPE_NAMES = {dtype: name for name, dtype in DTYPES.items()}
TensorSpecs = dict[str, tuple[str, tuple[int, ...]]]  # name -> (safetensors dtype, shape)


def write_safetensors(path: Path, specs: TensorSpecs, produce: Callable[[str], Tensor],
                      metadata: dict[str, str] | None = None,
                      progress: Callable[[int, int], None] | None = None) -> None:
    """Write ``specs`` to ``path``, calling ``produce(name)`` for each tensor in order and storing it in the
    spec's dtype; a produced tensor of another shape is a CheckpointError naming it. ``progress(done, total)``
    follows the tensors written."""
    header: dict[str, object] = {"__metadata__": metadata or {"format": "pt"}}
    offset = 0
    for name, (dtype, shape) in specs.items():
        size = DTYPES[dtype].itemsize
        for dim in shape:
            size *= dim
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # the reference writer pads the header to 8 bytes
    with open(path, "wb") as handle:
        handle.write(len(raw).to_bytes(8, "little") + raw)
        for done, (name, (dtype, shape)) in enumerate(specs.items(), start=1):
            tensor = produce(name)
            if tuple(tensor.shape) != tuple(shape):
                raise CheckpointError(f"tensor {name}: the source gives shape {tuple(tensor.shape)}, the file "
                                      f"needs {tuple(shape)}")
            tensor = tensor.detach().to(dtype=DTYPES[dtype], device="cpu").contiguous()
            handle.write(tensor.reshape(-1).view(torch.uint8).numpy().data if tensor.numel() else b"")
            del tensor
            if progress is not None:
                progress(done, len(specs))
