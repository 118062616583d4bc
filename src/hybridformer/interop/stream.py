"""Write a safetensors file one tensor at a time, so conversion never holds the whole model.

The format is a little-endian u64 header size, a JSON header (dtype, shape, byte range of each
tensor) and the raw bytes (https://github.com/huggingface/safetensors). Shapes are known before
any tensor is computed (from the model built on the ``meta`` device), so the header goes first and
each tensor is produced, written and freed in turn: peak memory is about one tensor.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor

from ..errors import CheckpointError

DTYPES = {torch.float32: ("F32", 4), torch.float16: ("F16", 2), torch.bfloat16: ("BF16", 2)}


def write_streaming(path: Path, specs: dict[str, tuple[tuple[int, ...], torch.dtype]],
                    produce: Callable[[str], Tensor], metadata: dict[str, str] | None = None,
                    progress: Callable[[int, int], None] | None = None) -> None:
    """Write ``specs`` (name -> (shape, dtype)) to ``path``, calling ``produce(name)`` for each tensor in
    order; a produced tensor of another shape is a CheckpointError naming it. ``progress(done, total)``
    follows the tensors written."""
    header: dict[str, object] = {"__metadata__": metadata or {"format": "pt"}}
    offset = 0
    for name, (shape, dtype) in specs.items():
        size = DTYPES[dtype][1]
        for dim in shape:
            size *= dim
        header[name] = {"dtype": DTYPES[dtype][0], "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as handle:
        handle.write(struct.pack("<Q", len(raw)))
        handle.write(raw)
        for done, (name, (shape, dtype)) in enumerate(specs.items(), start=1):
            tensor = produce(name)
            if tuple(tensor.shape) != tuple(shape):
                raise CheckpointError(f"tensor {name}: the source gives shape {tuple(tensor.shape)}, the config "
                                      f"needs {tuple(shape)}")
            tensor = tensor.detach().to(dtype=dtype, device="cpu").contiguous()
            handle.write(tensor.reshape(-1).view(torch.uint8).numpy().data if tensor.numel() else b"")
            del tensor
            if progress is not None:
                progress(done, len(specs))
