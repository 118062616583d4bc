"""A compiled decoding step: ``torch.compile`` of a model's one-token ``decode``, opt-in (``compile=True``).

Eager decoding of a small model at batch 1 spends much of each step launching small operations (norms, RoPE,
head reshapes, cache writes); inductor fuses them. Only one-token steps are compiled — the prompt pass stays
eager — with symbolic lengths (``dynamic=True``), so one graph serves every step of a growing cache: a graph
specialised to each length would recompile at every token (docs/RESULTS.md, *Decoding speed*). The caches are
grown in chunks outside the compiled graph (:meth:`~hybridformer.cache.DecodingCache.reserve`), so the graph
never takes the growing branch. On CUDA the same graph runs without CUDA graphs (they would record one graph
per cache length). The whole step must compile as one graph (``fullgraph``): a module the compiler cannot
trace would split it into many small graphs, slower than eager (packed int8/int4/bf16 weights are traced
through one opaque operator each, ``quantized.packed_linear``). So any failure to compile is one warning line
on stderr, and that step and every later one run eagerly: the tokens are the same either way.
"""

from __future__ import annotations

import sys

import torch
from torch import Tensor, nn

from ..cache import DecodingCache, keep_transposes
from ..position import SinusoidalPositions

RESERVE_CHUNK = 256  # cache columns reserved at a time ahead of the compiled steps
# dynamo's settings while a step runs (the process's own are left alone): every model's decode shares one code
# object, and each model (an ensemble's members) and batch-shape class is a graph of its own, so more graphs than
# dynamo's default 8; Python floats (scales) as constants: made symbolic, they were specialised late, which
# restarted the whole trace (twice the tracing time)
DYNAMO = {"recompile_limit": 64, "specialize_float": True}


class CompiledDecode:
    """``model.decode`` for one-token steps through ``torch.compile``, falling back to eager on failure."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.compiled = torch.compile(model.decode, dynamic=True, fullgraph=True)
        self.failed: str | None = None  # why compilation failed, once it has
        self.tables = [m for m in model.modules() if isinstance(m, SinusoidalPositions)]

    def __call__(self, tokens: Tensor, *args, cache: DecodingCache, offset: int, **kwargs) -> Tensor:
        if self.failed is None:
            # one spare column: a cache view spanning its whole buffer would specialise the graph
            columns = -(-(offset + 2) // RESERVE_CHUNK) * RESERVE_CHUNK
            cache.reserve(columns)
            for table in self.tables:  # position tables grow outside the graph too
                table.reserve(columns)
            if tokens.shape[0] == 1:  # one-row steps multiply by transposed weights (cache.project)
                keep_transposes(self.model, cache.shared)
            try:
                with torch._dynamo.config.patch(DYNAMO):
                    return self.compiled(tokens, *args, cache=cache, offset=offset, **kwargs)
            except Exception as exc:  # noqa: BLE001 - any compiler failure means: decode eagerly
                self.failed = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
                print(f"warning: the compiled decoding step failed ({self.failed[:200]}); decoding eagerly",
                      file=sys.stderr, flush=True)
        return self.model.decode(tokens, *args, cache=cache, offset=offset, **kwargs)
