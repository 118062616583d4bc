"""Greedy decoding speed of compressed variants, measured interleaved (round-robin, median of rounds),
so machine load hits every variant alike. Used for docs/RESULTS.md's Multi30k trade-off table.

    python benchmarks/compress_speed.py float=runs/m30k-t1/checkpoints/step-000500 \
        int8=runs/compress-exp/variants/int8 heads-0.3=runs/compress-exp/variants/heads-0.3 --rounds 3
"""

from __future__ import annotations

import argparse
import gzip
import json
import statistics
from pathlib import Path

import torch

from hybridformer import load_checkpoint
from hybridformer.bench.tradeoff import decode_speed
from hybridformer.data.text import encode_source, pad

TEST = Path(__file__).resolve().parents[2] / "shared" / "data" / "multi30k" / "test_2016_flickr.en.gz"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("variants", nargs="+", help="label=checkpoint; the first is the baseline")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sentences", type=int, default=64)
    args = parser.parse_args()
    torch.set_num_threads(1)
    ckpts = {label: load_checkpoint(path) for label, _, path in (v.partition("=") for v in args.variants)}
    base = next(iter(ckpts.values()))
    with gzip.open(TEST, "rt", encoding="utf-8") as handle:
        src = [line.rstrip("\n") for line, _ in zip(handle, range(args.sentences), strict=False)]
    batches = [pad([encode_source(base.tokenizer, s, base.config) for s in src[i:i + 32]], base.config.pad_id)
               for i in range(0, len(src), 32)]
    speeds: dict[str, list[float]] = {label: [] for label in ckpts}
    for _ in range(args.rounds):
        for label, ckpt in ckpts.items():
            speeds[label].append(decode_speed(ckpt.model, batches, bos_id=base.config.bos_id,
                                              eos_id=base.config.eos_id))
    median = {label: statistics.median(values) for label, values in speeds.items()}
    first = median[next(iter(median))]
    print(json.dumps({label: {"tokens_per_s": round(v), "ratio": round(v / first, 2)} for label, v in median.items()}))


if __name__ == "__main__":
    main()
