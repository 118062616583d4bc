"""Windowed attention in causal inference (a prefill, a perplexity pass) as a share of this CPU's GEMM peak.

One ``sliding_window`` call (SmolLM2's attention shape: 9 query heads, 3 kv heads of 64; batch 1; no gradient)
against the fp32 2048² matmul rate measured in the same process. Useful work is what the window asks for:
4 · head_dim · heads FLOPs per (query, seen key) pair, each query seeing ``min(position, window + sinks) + 1``
keys; time is CPU time (``time.process_time``, robust on a shared machine), the best of ``--rounds``. Full
causal SDPA over the same tensors is reported beside it (its time, and its window / full ratio).

    OMP_NUM_THREADS=1 python benchmarks/window_kernel.py --lengths 4096,16384 --window 256
    OMP_NUM_THREADS=1 python benchmarks/window_kernel.py --lengths 8192 --window 2048 --sinks 4 --sink-positions cache
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from hybridformer.attention import build_attention
from hybridformer.position import RotaryEmbedding

HEADS, KV_HEADS, HEAD_DIM = 9, 3, 64


def cpu_seconds(call: Callable[[], object], rounds: int) -> float:
    call()  # warm-up
    best = float("inf")
    for _ in range(rounds):
        begin = time.process_time()
        call()
        best = min(best, time.process_time() - begin)
    return best


def measure(kernel: torch.nn.Module, length: int, rounds: int) -> tuple[float, float]:
    """CPU seconds of the windowed call and of full causal SDPA on the same random tensors."""
    q = torch.randn(1, HEADS, length, HEAD_DIM)
    k, v = torch.randn(1, KV_HEADS, length, HEAD_DIM), torch.randn(1, KV_HEADS, length, HEAD_DIM)
    rope = RotaryEmbedding(HEAD_DIM)(torch.arange(length))
    with torch.inference_mode():
        windowed = cpu_seconds(lambda: kernel(q, k, v, causal=True, rope=rope), rounds)
        full = cpu_seconds(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True), 1)
    return windowed, full


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lengths", default="4096,16384")
    parser.add_argument("--window", type=int, default=256)
    parser.add_argument("--sinks", type=int, default=0)
    parser.add_argument("--sink-positions", default="absolute", choices=["absolute", "cache"])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    a = torch.randn(2048, 2048)
    peak = 2 * 2048**3 / cpu_seconds(lambda: a @ a, args.rounds)
    kernel = build_attention("sliding_window", window=args.window, num_global=args.sinks,
                             sink_positions=args.sink_positions)
    print(f"fp32 GEMM peak {peak / 1e9:.0f} GFLOP/s (2048² matmul, 1 thread); window {args.window}, {args.sinks} sinks "
          f"({args.sink_positions})\n")
    print("| tokens | window CPU s | % of GEMM peak | full causal CPU s | window / full |")
    print("|---|---|---|---|---|")
    for length in map(int, args.lengths.split(",")):
        windowed, full = measure(kernel, length, args.rounds)
        seen = sum(min(p, args.window + args.sinks) + 1 for p in range(length))
        share = 4 * HEAD_DIM * HEADS * seen / windowed / peak
        print(f"| {length} | {windowed:.3f} | {100 * share:.0f}% | {full:.3f} | {windowed / full:.2f} |", flush=True)


if __name__ == "__main__":
    main()
