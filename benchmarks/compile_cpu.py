"""Issue 9: does ``torch.compile`` speed up a hybridformer training step on this CPU?

Eager vs ``torch.compile(model)`` (inductor, default mode) at ``bench throughput``'s default size,
timed interleaved in one process (median of ``--repeats``), after one warm-up step each.

    python benchmarks/compile_cpu.py [--threads 1] [--repeats 7]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

import hybridformer as hf
from hybridformer.bench.throughput import SIZES, _batch


def make_step(cfg: hf.ModelConfig, batch, compiled: bool):
    torch.manual_seed(0)
    model = hf.build_model(cfg).train()
    forward = torch.compile(model) if compiled else model
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    src, tgt_in, tgt_out = batch

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(forward(src, tgt_in).flatten(0, 1), tgt_out.flatten()).backward()
        optimizer.step()

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    size = SIZES["default"]
    cfg = hf.ModelConfig(vocab_size=size.vocab, d_model=size.d_model, heads=size.heads, ffn_dim=size.ffn_dim,
                         dropout=0.0, encoder={"layers": size.layers}, decoder={"layers": size.layers})
    batch = _batch(size)
    steps = {"eager": make_step(cfg, batch, False), "compiled": make_step(cfg, batch, True)}
    for name, step in steps.items():
        start = time.perf_counter()
        step()
        print(f"{name}: first step (incl. compilation) {time.perf_counter() - start:.1f} s", flush=True)
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(args.repeats):
        for name, step in steps.items():
            start = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - start)
    eager, compiled = (statistics.median(times[n]) for n in ("eager", "compiled"))
    tokens = size.batch * size.tgt_len
    print(f"eager {eager:.3f} s/step ({tokens / eager:.0f} tok/s), compiled {compiled:.3f} s/step "
          f"({tokens / compiled:.0f} tok/s): compiled/eager speed = {eager / compiled:.2f}x")


if __name__ == "__main__":
    main()
