"""Prefill time of a windowed (longified) LM against the same LM with full attention, interleaved in one process.

A SmolLM2-135M-shaped decoder (d_model 576, 9 heads, 3 kv heads, SwiGLU 1536, RoPE, 49,152-token vocabulary;
``--layers`` of its 30 layers, random weights: speed does not depend on them) prefills one prompt through the
torch engine (``engine.prefill``), with full attention and with ``sliding_window`` (``--window``, ``--sinks``
StreamingLLM sinks at cache positions, as ``hybridformer longify`` makes them). Reports the median CPU time
(``time.process_time``: robust on a shared machine) per contender and the ratio to full attention.

    OMP_NUM_THREADS=1 python benchmarks/prefill_window.py --lengths 2048,3415 --window 2048 --sinks 4
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from hybridformer import ModelConfig, build_model
from hybridformer.decoding import ModelScorer
from hybridformer.engines.torch import TorchEngine


def engine(layers: int, attention: dict) -> TorchEngine:
    cfg = ModelConfig(arch="decoder_lm", vocab_size=49152, d_model=576, heads=9, kv_heads=3, ffn_dim=1536,
                      activation="swiglu", norm="rmsnorm", position="rope", max_positions=8192, dropout=0.0,
                      attention_bias=False, ffn_bias=False, decoder={"layers": layers, "attention": attention})
    return TorchEngine(ModelScorer(build_model(cfg).eval()), None, cfg, torch.device("cpu"), attention["name"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lengths", default="2048,3415")
    parser.add_argument("--window", type=int, default=2048)
    parser.add_argument("--sinks", type=int, default=4)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    window = {"name": "sliding_window", "window": args.window, "num_global": args.sinks}
    if args.sinks:
        window["sink_positions"] = "cache"
    full, windowed = engine(args.layers, {"name": "full"}), engine(args.layers, window)
    contenders = {"full": full.prefill, "window": windowed.prefill}
    print(f"| tokens | full CPU s | window CPU s | window / full |  ({args.layers} layers, "
          f"window {args.window}, {args.sinks} sinks, 1 thread, median of {args.rounds})")
    print("|---|---|---|---|")
    for length in map(int, args.lengths.split(",")):
        prompt = torch.randint(4, 49152, (length,)).tolist()
        times: dict[str, list[float]] = {name: [] for name in contenders}
        for _ in range(args.rounds):
            for name, contender in contenders.items():  # interleaved, round by round
                begin = time.process_time()
                contender([prompt])
                times[name].append(time.process_time() - begin)
        base, win = (statistics.median(times[name]) for name in contenders)
        print(f"| {length} | {base:.2f} | {win:.2f} | {win / base:.2f} |")


if __name__ == "__main__":
    main()
