"""Which one-row int8 product is fastest on this CPU? PyTorch's int8 kernels at a model's linear shapes, cold weights.

Decoding at batch 1 reads every weight once per step, so each kernel is timed over enough copies of each shape
that they do not stay in cache (1 thread, CPU time per call, µs and GB/s of int8 weights), then the model's own
products in its order (``Int8Linear``, FBGEMM), which is what one step costs in products:

    python benchmarks/int8_kernels.py CKPT [--copies-mb 64]
"""

from __future__ import annotations

import argparse
import time
import warnings

import torch

from hybridformer import load_checkpoint
from hybridformer.compress import quantize_model
from hybridformer.quantized import _VNNI, Int8Linear


def per_call_us(calls: list, repeats: int = 5) -> float:
    for call in calls[: min(len(calls), 8)]:
        call()
    start = time.process_time()
    for _ in range(repeats):
        for call in calls:
            call()
    return (time.process_time() - start) / (repeats * len(calls)) * 1e6


def kernels(out_features: int, in_features: int, copies: int) -> dict[str, float]:
    """µs per call of each kernel on ``copies`` distinct (out, in) int8 weights."""
    weights = [torch.randint(-127, 128, (out_features, in_features), dtype=torch.int8) for _ in range(copies)]
    scales = torch.rand(out_features, dtype=torch.float64) / 100
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # quantized tensors are deprecated; the kernel is what is measured
        fbgemm = [torch.ops.quantized.linear_prepack(torch._make_per_channel_quantized_tensor(
            w, scales, torch.zeros(out_features, dtype=torch.int64), 0), None) for w in weights]
    onednn = [torch.ops.onednn.qlinear_prepack(w, [1, in_features]) for w in weights]
    x = torch.randn(1, in_features)
    x_bf16, x_uint8, x_int8 = x.bfloat16(), torch.randint(0, 256, (1, in_features), dtype=torch.uint8), x.to(torch.int8)
    bf16_scales, float_scales = scales.bfloat16(), scales.float()
    transposed = [w.t().contiguous() for w in weights]
    zero_points = torch.zeros(out_features, dtype=torch.int64)
    return {
        "FBGEMM linear_dynamic (int8)": per_call_us(
            [lambda p=p: torch.ops.quantized.linear_dynamic(x, p, not _VNNI) for p in fbgemm]),  # 8-bit weights
        "_weight_int8pack_mm (int8-weight)": per_call_us(
            [lambda w=w: torch._weight_int8pack_mm(x_bf16, w, bf16_scales) for w in weights]),
        "oneDNN qlinear_pointwise": per_call_us(
            [lambda p=p: torch.ops.onednn.qlinear_pointwise(x_uint8, 0.1, 128, p, float_scales, zero_points, None,
                                                              1.0, 0, torch.float32, "none", [], "") for p in onednn]),
        "_int_mm": per_call_us([lambda w=w: torch._int_mm(x_int8, w) for w in transposed]),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("checkpoint")
    parser.add_argument("--copies-mb", type=float, default=64, help="int8 weight megabytes per shape (beyond cache)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    ckpt = load_checkpoint(args.checkpoint)
    model, _ = quantize_model(ckpt.model, ckpt.config, "int8")
    layers = [m for m in model.modules() if isinstance(m, Int8Linear)]
    shapes = sorted({(m.out_features, m.in_features) for m in layers})
    print("| shape (out × in) | MB | " + " | ".join(kernels(8, 8, 1)) + " |")
    print("|---|---:|" + "---:|" * 4)
    for out_features, in_features in shapes:
        megabytes = out_features * in_features / 1e6
        copies = max(2, int(args.copies_mb / megabytes))
        cells = [f"{us:.1f} µs ({megabytes * 1e3 / us:.0f} GB/s)"
                 for us in kernels(out_features, in_features, copies).values()]
        print(f"| {out_features} × {in_features} | {megabytes:.2f} | " + " | ".join(cells) + " |")
    inputs = [torch.randn(1, m.in_features) for m in layers]
    step = [lambda m=m, x=x: m.product(x) for m, x in zip(layers, inputs, strict=True)]
    total = per_call_us(step, repeats=30) * len(step) / 1e3
    megabytes = sum(m.in_features * m.out_features for m in layers) / 1e6
    print(f"\nthe model's {len(layers)} products in order: {total:.2f} ms per step, "
          f"{megabytes:.0f} MB of int8 weights at {megabytes / total:.1f} GB/s")


if __name__ == "__main__":
    main()
