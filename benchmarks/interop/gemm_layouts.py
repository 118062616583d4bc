"""CPU time of SmolLM2-135M's matrix products in three GEMM layouts, by number of rows (decoding step widths).

    OMP_NUM_THREADS=1 nice -n 19 python benchmarks/interop/gemm_layouts.py

``F.linear(x, W)`` (W: out × in, what nn.Linear does), ``x @ Wt`` (a kept contiguous transpose,
in × out) and ``(W @ xᵀ)ᵀ`` (no copy), for the 30 layers' projections (qkv 960 × 576, out 576 × 576,
gate/up 3072 × 576, down 576 × 1536; random weights of the real shapes, each read once per pass as in
a decoding step) and for the 49,152 × 576 vocabulary head. Best of 4 passes, ``time.process_time``.
These numbers choose the layouts in ``hybridformer.cache.project`` and ``models.vocab_logits``.
"""

from __future__ import annotations

import json
import time

import torch
import torch.nn.functional as F

LAYER_SHAPES = [(960, 576), (576, 576), (3072, 576), (576, 1536)] * 30
HEAD = (49152, 576)


def cpu_ms(fn, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(4):
        start = time.process_time()
        for _ in range(repeat):
            fn()
        best = min(best, (time.process_time() - start) / repeat)
    return best * 1e3


def layouts(weights: list[torch.Tensor], rows: int) -> dict[str, float]:
    transposed = [w.t().contiguous() for w in weights]
    inputs = {w.shape[1]: torch.randn(rows, w.shape[1]) for w in weights}
    return {
        "F.linear(x, W)": cpu_ms(lambda: [F.linear(inputs[w.shape[1]], w) for w in weights]),
        "x @ Wt (kept transpose)": cpu_ms(lambda: [inputs[t.shape[0]] @ t for t in transposed]),
        "(W @ x.T).T": cpu_ms(lambda: [(w @ inputs[w.shape[1]].t()).t() for w in weights]),
    }


def main() -> None:
    torch.set_num_threads(1)
    layers = [torch.randn(*shape) for shape in LAYER_SHAPES]
    head = [torch.randn(*HEAD)]
    results = {}
    for rows in (1, 4, 8, 32):
        results[f"{rows} rows"] = {"30 layers (ms)": layouts(layers, rows), "vocab head (ms)": layouts(head, rows)}
        print(json.dumps({f"{rows} rows": results[f"{rows} rows"]}), flush=True)


if __name__ == "__main__":
    main()
