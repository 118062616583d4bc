"""Issue 9: how far is greedy decoding from its floor? One decoding step at ``bench throughput``'s
default size (batch 8) must at least run every weight matrix of the decoder once; this times exactly
those matrix products (the linear layers of 3 decoder layers + the vocabulary projection, M = 8 rows,
transposed-weight layout as hybridformer uses for the vocabulary) beside a full hybridformer greedy
step and an HF Bart ``generate`` step, interleaved in one process (median of ``--repeats``).

    python benchmarks/decode_floor.py [--threads 1] [--repeats 7]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from hybridformer.bench import peers
from hybridformer.bench.throughput import SIZES


def gemm_floor(size, rows: int):
    """The weight products of one decoder step: per layer QKV, out, cross-Q, cross-out, FFN in/out."""
    d, f, v = size.d_model, size.ffn_dim, size.vocab
    shapes = [(3 * d, d), (d, d), (d, d), (d, d), (f, d), (d, f)] * size.layers
    weights = [torch.randn(o, i) for o, i in shapes]
    vocab_t = torch.randn(d, v)
    x = {i: torch.randn(rows, i) for i in (d, f)}

    def step() -> None:
        for w in weights:
            F.linear(x[w.shape[1]], w)
        torch.matmul(x[d], vocab_t)

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--steps", type=int, default=64)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    size = SIZES["default"]
    src = torch.randint(3, size.vocab, (8, size.src_len), generator=torch.Generator().manual_seed(0))
    ours, bart = peers.hybridformer(size), peers.huggingface(size)
    floor = gemm_floor(size, rows=8)
    runs = {"hybridformer greedy": lambda: ours.greedy(src, args.steps),
            "HF Bart generate": lambda: bart.greedy(src, args.steps),
            "weight products only": lambda: [floor() for _ in range(args.steps)]}
    for run in runs.values():
        run()
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(args.repeats):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            times[name].append((time.perf_counter() - start) / args.steps * 1e3)
    hf_ms = statistics.median(times["HF Bart generate"])
    for name, values in times.items():
        ms = statistics.median(values)
        print(f"{name:22s} {ms:6.2f} ms/step   HF/this = {hf_ms / ms:.2f}")


if __name__ == "__main__":
    main()
