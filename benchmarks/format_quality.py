"""Quality of each weight format on real text: teacher-forced NLL and top-1 agreement with fp32.

    python benchmarks/format_quality.py CKPT TEXT [--tokens 256] [--schemes int8,int8-weight,int4,bf16]
        [--calibrate CALIBRATION_TEXT --alpha 0.5]   # SmoothQuant before int8 (calibrate on other text than TEXT)
"""

from __future__ import annotations

import argparse
import copy
import math

import torch
import torch.nn.functional as F

from hybridformer import load_checkpoint
from hybridformer.compress import quantize_model
from hybridformer.compress.data import text_batches


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("checkpoint")
    parser.add_argument("text")
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--schemes", default="int8,int8-weight,int4,bf16")
    parser.add_argument("--calibrate", help="text file: int8 is smoothed (SmoothQuant) on its lines first")
    parser.add_argument("--alpha", type=float, default=0.5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    ckpt = load_checkpoint(args.checkpoint)
    with open(args.text, encoding="utf-8") as handle:
        ids = torch.tensor([ckpt.tokenizer.encode(handle.read(args.tokens * 16)).ids[: args.tokens]])

    def nll(logits: torch.Tensor) -> float:
        return F.cross_entropy(logits[0, :-1], ids[0, 1:]).item()

    with torch.no_grad():
        reference = ckpt.model(ids)
        print(f"fp32: nll {nll(reference):.4f}, ppl {math.exp(nll(reference)):.2f}")
        calibration = text_batches(ckpt.tokenizer, ckpt.config, [args.calibrate], batch_size=8,
                                   purpose="calibration") if args.calibrate else None
        for scheme in args.schemes.split(","):
            model, _ = quantize_model(copy.deepcopy(ckpt.model), ckpt.config, scheme, alpha=args.alpha,
                                      calibration=calibration if scheme == "int8" else None)
            logits = model(ids)
            agree = (logits.argmax(-1) == reference.argmax(-1)).float().mean().item()
            print(f"{scheme}: nll {nll(logits):.4f}, ppl {math.exp(nll(logits)):.2f} "
                  f"({math.exp(nll(logits) - nll(reference)) - 1:+.1%}), top-1 agreement with fp32 {agree:.1%}")


if __name__ == "__main__":
    main()
