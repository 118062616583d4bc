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
import types

import torch
from torch import Tensor, nn

from ..cache import DecodingCache, keep_transposes, plain_linears
from ..position import SinusoidalPositions

RESERVE_CHUNK = 256  # cache columns reserved at a time ahead of the compiled steps
# dynamo's settings while a step runs (the process's own are left alone): each batch-shape class is a graph of its
# own, so allow more than dynamo's default 8; Python floats (scales) as constants: made symbolic, they were
# specialised late, which restarted the whole trace (twice the tracing time)
DYNAMO = {"recompile_limit": 64, "specialize_float": True}
# Per-step overhead, measured on a 30-layer model (int8, batch 1): checking the attributes of every torch.nn layer
# (weights, eps) before each step cost 0.6 ms, inductor's size and alignment asserts on every extern product's
# output 0.4 ms. A decoding model is fixed once loaded, so the compiled step checks only our own modules, whose
# graphs are the model's own (:func:`_own_decode`), and asserts nothing.
INDUCTOR = {"size_asserts": False, "alignment_asserts": False,
            "guard_filter_fn": torch.compiler.skip_guard_on_inbuilt_nn_modules_unsafe}


class CompiledDecode:
    """``model.decode`` for one-token steps through ``torch.compile``, falling back to eager on failure."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.compiled = torch.compile(_own_decode(model), dynamic=True, fullgraph=True, options=INDUCTOR)
        self.failed: str | None = None  # why compilation failed, once it has
        self.tables = [m for m in model.modules() if isinstance(m, SinusoidalPositions)]
        self.linears = plain_linears(model)

    def __call__(self, tokens: Tensor, *args, cache: DecodingCache, offset: int, **kwargs) -> Tensor:
        if self.failed is None:
            # one spare column: a cache view spanning its whole buffer would specialise the graph
            columns = -(-(offset + 2) // RESERVE_CHUNK) * RESERVE_CHUNK
            cache.reserve(columns)
            for table in self.tables:  # position tables grow outside the graph too
                table.reserve(columns)
            if tokens.shape[0] == 1:  # one-row steps multiply by transposed weights (cache.project)
                keep_transposes(self.linears, cache.shared)
            try:
                with torch._dynamo.config.patch(DYNAMO):
                    return self.compiled(tokens, *args, cache=cache, offset=offset, **kwargs)
            except Exception as exc:  # noqa: BLE001 - any compiler failure means: decode eagerly
                self.failed = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
                print(f"warning: the compiled decoding step failed ({self.failed[:200]}); decoding eagerly",
                      file=sys.stderr, flush=True)
        return self.model.decode(tokens, *args, cache=cache, offset=offset, **kwargs)


def _own_decode(model: nn.Module):
    """``model.decode`` on a copy of its code object: dynamo keeps compiled graphs per code object, so each model
    (an ensemble's members) has graphs of its own, never one picked by guards it no longer checks."""
    decode = type(model).decode
    own = types.FunctionType(decode.__code__.replace(), decode.__globals__, decode.__name__, decode.__defaults__,
                             decode.__closure__)
    own.__kwdefaults__ = decode.__kwdefaults__
    return types.MethodType(own, model)
